"""The published OpenAPI document: valid, complete, and true to what the API answers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate

from budgets.models import Budget, BudgetState, Enforcement, Scope
from rensei.models import Channel
from rensei.tokens import SCOPES, create_token, revoke
from sessions.models import CommandRun, CommandRunState, Issue, Session, SessionState
from tests.sessions_web.conftest import ApiClient
from tests.sessions_web.test_api import BODY, api_routes, concrete

pytestmark = pytest.mark.django_db


@pytest.fixture
def doc(db: None) -> dict[str, Any]:
    resp = ApiClient(None).get("/api/v1/openapi.json")
    assert resp.status_code == 200
    document: dict[str, Any] = resp.json()
    return document


def test_document_validates(doc: dict[str, Any]) -> None:
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"] == "3.1.0"


def test_every_route_and_method_is_described(doc: dict[str, Any]) -> None:
    served = {
        (path, method.lower())
        for path, methods in api_routes()
        if "{unknown}" not in path  # the JSON 404 for everything else
        for method in methods
    }
    described = {
        (path, method) for path, operations in doc["paths"].items() for method in operations
    }
    assert served == described
    assert len(served) == 19


def test_bearer_scheme_everywhere_but_the_document(doc: dict[str, Any]) -> None:
    # Ninja names the scheme after the auth class and states it on each operation.
    assert doc["components"]["securitySchemes"] == {
        "BearerToken": {"type": "http", "scheme": "bearer", "description": "An org API token."}
    }
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if path == "/api/v1/openapi.json":
                assert op["security"] == []
            else:
                assert op["security"] == [{"BearerToken": []}], (path, method)
                assert "401" in op["responses"], (path, method)
                if "{session_id}" in path:
                    assert "404" in op["responses"], (path, method)


def test_unknown_query_parameters_are_documented_400s(doc: dict[str, Any]) -> None:
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if path == "/api/v1/openapi.json":
                continue
            assert "400" in op["responses"], (path, method)
            said = op["responses"]["400"]["description"] + op.get("description", "")
            assert "Query parameters the operation does not list are refused" in said


EVENTS_PATHS = ("/api/v1/events", "/api/v1/webhooks")


def send(client: ApiClient, method: str, url: str, body: Any) -> Any:
    """``method`` (as the document names it) to ``url`` with a JSON body."""
    if method == "get":
        return client.get(url)
    if method == "post":
        return client.post(url, body)
    return client.client.generic(
        method.upper(),
        url,
        json.dumps(body),
        content_type="application/json",
        **client._headers({}),  # type: ignore[arg-type]
    )


class Checker:
    """Checks a real response against the documented status, headers and schema."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def __call__(self, path: str, method: str, resp: Any) -> Any:
        op = self.doc["paths"][path][method]
        status = str(resp.status_code)
        assert status in op["responses"], f"{method} {path} answered undocumented {status}"
        documented = op["responses"][status]
        assert resp["Content-Type"] == "application/json"
        schema = documented["content"]["application/json"]["schema"]
        validator = Draft202012Validator(
            {**schema, "components": self.doc["components"]}, format_checker=FormatChecker()
        )
        errors = [e.message for e in validator.iter_errors(resp.json())]
        assert not errors, (method, path, status, errors)
        for header in documented.get("headers", {}):
            assert resp.has_header(header), (method, path, status, header)
        self.seen.add((path, method, status))
        return resp.json()


def test_responses_match_the_document(  # type: ignore[no-untyped-def]
    doc: dict[str, Any], api: ApiClient, api_b: ApiClient, pool_a, session_factory, org_a
) -> None:
    check = Checker(doc)
    sessions = "/api/v1/sessions"
    one = "/api/v1/sessions/{session_id}"
    created = check(sessions, "post", api.post(sessions, BODY, headers={"Idempotency-Key": "k"}))
    check(sessions, "post", api.post(sessions, BODY, headers={"Idempotency-Key": "k"}))
    check(
        sessions, "post", api.post(sessions, {**BODY, "env": {}}, headers={"Idempotency-Key": "k"})
    )
    check(sessions, "post", api.post(sessions, {"issue": {}}))
    check(sessions, "get", api.get(sessions, {"limit": 1}))
    check(sessions, "get", api.get(sessions, {"state": "nope"}))
    check(one, "get", api.get(concrete(one, created["id"])))
    check(one, "get", api_b.get(concrete(one, created["id"])))
    # A block budget the last pass enforced refuses new sessions for its issue (402).
    budget = Budget.objects.create(
        org=org_a, scope=Scope.ISSUE, amount_usd=Decimal("1.00"), enforcement=Enforcement.BLOCK
    )
    blocked_issue = Issue.objects.get(org=org_a, key="ENG-142")  # BODY's issue
    BudgetState.objects.create(
        budget=budget,
        period=f"issue-{blocked_issue.pk}",
        issue=blocked_issue,
        consumed_usd=Decimal("1.50"),
        enforced_at=timezone.now(),
    )
    check(sessions, "post", api.post(sessions, BODY))
    budget.delete()

    running = session_factory(pool=pool_a, started_at=pool_a.created_at)
    check("/api/v1/openapi.json", "get", ApiClient(None).get("/api/v1/openapi.json"))
    for action, then in (("pause", "paused"), ("resume", "running"), ("terminate", "")):
        path = f"/api/v1/sessions/{{session_id}}/{action}"
        check(path, "post", api.post(concrete(path, running.pk)))
        if then:  # as if the job had finished
            Session.objects.filter(pk=running.pk).update(state=then)
        check(path, "post", api_b.post(concrete(path, running.pk)))
        ended = session_factory(SessionState.TERMINATED)
        check(path, "post", api.post(concrete(path, ended.pk)))

    exec_path = "/api/v1/sessions/{session_id}/exec"
    live = session_factory()
    run = check(exec_path, "post", api.post(concrete(exec_path, live.pk), {"command": "id"}))
    check(exec_path, "post", api.post(concrete(exec_path, live.pk), {"command": 1}))
    check(exec_path, "post", api.post(concrete(exec_path, running.pk), {"command": "id"}))
    check(exec_path, "post", api_b.post(concrete(exec_path, live.pk), {"command": "id"}))

    run_path = "/api/v1/sessions/{session_id}/exec/{run_id}"
    check(run_path, "get", api.get(concrete(run_path, live.pk, run["id"])))
    done = CommandRun.objects.create(
        session=live, command="true", state=CommandRunState.DONE, exit_code=0
    )
    check(run_path, "get", api.get(concrete(run_path, live.pk, done.pk)))
    check(run_path, "get", api_b.get(concrete(run_path, live.pk, done.pk)))

    # A query parameter an operation does not list is a 400 naming it, on every operation.
    for path, operations in doc["paths"].items():
        if path.endswith("openapi.json"):
            continue
        url = concrete(path, live.pk, done.pk) + "?colour=red"
        for method in operations:
            resp = send(api, method, url, {"command": "id"})
            assert list(check(path, method, resp)["fields"]) == ["colour"], (method, url)

    revoke(org_a.api_tokens.get(), None, Channel.CLI)
    for path, operations in doc["paths"].items():
        if path.endswith("openapi.json"):
            continue
        url = concrete(path, live.pk, done.pk)
        for method in operations:
            check(path, method, send(api, method, url, {}))

    # A token without the operation's scope is a 403 naming it, on every operation.
    narrow = {
        scope: ApiClient(create_token(org_a, scope, None, Channel.CLI, scopes=[scope])[1])
        for scope in SCOPES
    }
    for path, operations in doc["paths"].items():
        url = concrete(path, live.pk, done.pk)
        for method, op in operations.items():
            if "x-required-scope" not in op:
                continue
            other = next(c for s, c in narrow.items() if s != op["x-required-scope"])
            resp = send(other, method, url, {"command": "id"})
            assert check(path, method, resp)["missing_scope"] == op["x-required-scope"]

    # Every documented response was produced at least once (the events and webhooks
    # operations' own in tests/events/test_api.py).
    documented = {
        (path, method, status)
        for path, operations in doc["paths"].items()
        if not path.startswith(EVENTS_PATHS)
        for method, op in operations.items()
        for status in op["responses"]
    }
    assert documented - check.seen == set()
