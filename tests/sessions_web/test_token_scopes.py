"""Scoped, expiring API tokens: each scope gates its routes, an expired token is refused,
and the OpenAPI document names each operation's scope."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from rensei.models import ApiToken, Channel, Organization
from rensei.tokens import EXEC, READ, WRITE, create_token
from sessions.models import SessionState
from tests.sessions_web.conftest import ApiClient, make_session

BASE = "/api/v1"
CREATE_BODY = {"issue": {"key": "ENG-1", "title": "t"}, "runtime_kinds": ["npm"]}


def client_with(org: Organization, *scopes: str, **kwargs) -> ApiClient:  # type: ignore[no-untyped-def]
    _, plaintext = create_token(org, "scoped", None, Channel.CLI, scopes=scopes, **kwargs)
    return ApiClient(plaintext)


def calls(session_id: int) -> list[tuple[str, str, str, object]]:
    """(scope needed, method, path, body) for every operation."""
    s = f"{BASE}/sessions/{session_id}"
    return [
        (READ, "get", f"{BASE}/sessions", None),
        (READ, "get", s, None),
        (WRITE, "post", f"{BASE}/sessions", CREATE_BODY),
        (WRITE, "post", f"{s}/pause", None),
        (WRITE, "post", f"{s}/resume", None),
        (WRITE, "post", f"{s}/terminate", None),
        (EXEC, "post", f"{s}/exec", {"command": "echo hi"}),
        (EXEC, "get", f"{s}/exec/1", None),
    ]


def send(api: ApiClient, method: str, path: str, body: object):  # type: ignore[no-untyped-def]
    return api.get(path) if method == "get" else api.post(path, body)


@pytest.mark.parametrize("granted", [READ, WRITE, EXEC])
def test_each_scope_gates_its_routes(org_a, granted):  # type: ignore[no-untyped-def]
    session = make_session(org_a, SessionState.PAUSED)
    api = client_with(org_a, granted)
    for needed, method, path, body in calls(session.pk):
        response = send(api, method, path, body)
        if needed == granted:
            assert response.status_code != 403, (method, path, response.content)
        else:
            assert response.status_code == 403, (method, path, response.status_code)
            assert response.json() == {
                "error": f"This token lacks the {needed} scope.",
                "missing_scope": needed,
            }


def test_other_orgs_session_is_still_a_404(org_a, org_b):  # type: ignore[no-untyped-def]
    theirs = make_session(org_b)
    response = client_with(org_a, READ).get(f"{BASE}/sessions/{theirs.pk}")
    assert response.status_code == 404


def test_expired_token_is_refused_with_401(org_a):  # type: ignore[no-untyped-def]
    today = timezone.now().date()
    api = client_with(org_a, READ, expires_on=today)
    assert api.get(f"{BASE}/sessions").status_code == 200  # works through its last day
    # The same token, once its last day has passed:
    ApiToken.objects.update(expires_on=today - timedelta(days=1))
    response = api.get(f"{BASE}/sessions")
    assert response.status_code == 401 and response.json()["error"] == "token expired"


def test_openapi_names_each_operations_scope(api):  # type: ignore[no-untyped-def]
    doc = api.client.get(f"{BASE}/openapi.json").json()
    scopes = {
        op["operationId"]: op.get("x-required-scope")
        for path in doc["paths"].values()
        for op in path.values()
    }
    assert scopes == {
        "listSessions": READ,
        "getSession": READ,
        "createSession": WRITE,
        "pauseSession": WRITE,
        "resumeSession": WRITE,
        "terminateSession": WRITE,
        "execInSession": EXEC,
        "getCommandRun": EXEC,
        "getOpenApi": None,  # public: it holds no data
        "listEvents": "events:read",
        "listWebhooks": "webhooks:read",
        "getWebhook": "webhooks:read",
        "listWebhookDeliveries": "webhooks:read",
        "createWebhook": "webhooks:write",
        "updateWebhook": "webhooks:write",
        "deleteWebhook": "webhooks:write",
        "rotateWebhookSecret": "webhooks:write",
        "sendWebhookTest": "webhooks:write",
        "redeliverWebhook": "webhooks:write",
    }
    create = doc["paths"]["/api/v1/sessions"]["post"]["responses"]["403"]
    assert WRITE in create["description"]
