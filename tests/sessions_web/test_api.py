"""The JSON API as the dispatcher sees it: auth, create, read, list (acting: test_api_actions)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from rensei.models import AuditEvent, Channel
from rensei.tokens import revoke
from sessions.models import CommandRun, CommandRunState, Session, SessionState
from tests.sessions_web.conftest import ApiClient

pytestmark = pytest.mark.django_db

BODY = {
    "issue": {"key": "ENG-142", "title": "Fix login", "url": "https://issues.example/ENG-142"},
    "runtime_kinds": ["npm"],
    "requirement_kinds": ["git"],
    "env": {"GITHUB_TOKEN": "ghp_secret_value"},
}


def api_routes() -> list[tuple[str, tuple[str, ...]]]:
    """(route with {params}, methods) for every /api/v1/ URL the project serves."""
    found = []

    def walk(patterns: list, prefix: str) -> None:  # type: ignore[type-arg]
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and (prefix + str(p.pattern)).startswith("api/v1/"):
                found.append((prefix + str(p.pattern), p))

    walk(get_resolver().url_patterns, "")
    out = []
    for route, pattern in found:
        import re

        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        methods = getattr(pattern.callback, "api_methods", ("GET",))
        out.append((path, tuple(methods)))
    return out


def concrete(path: str, session_id: int = 1, run_id: int = 1) -> str:
    return (
        path.replace("{session_id}", str(session_id))
        .replace("{run_id}", str(run_id))
        .replace("{webhook_id}", str(session_id))
        .replace("{delivery_id}", str(run_id))
        .replace("{unknown}", "nope")
    )


# --- auth ----------------------------------------------------------------------------------


def test_every_api_route_needs_a_token(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    anonymous = ApiClient(None)
    wrong = ApiClient("rsn_abcdefgh_not-a-real-token")
    checked = 0
    for path, methods in api_routes():
        if path == "/api/v1/openapi.json":
            continue
        for method in ("GET", "POST", *methods):
            for client in (anonymous, wrong):
                url = concrete(path)
                resp = client.get(url) if method == "GET" else client.post(url, {})
                assert resp.status_code == 401, (method, url)
                assert resp["Content-Type"] == "application/json"
                assert resp["WWW-Authenticate"].startswith("Bearer")
                assert "token" in resp.json()["error"]
        checked += 1
    assert checked >= 8


def test_revoked_token_is_refused(api: ApiClient, org_a) -> None:  # type: ignore[no-untyped-def]
    assert api.get("/api/v1/sessions").status_code == 200
    token = org_a.api_tokens.get()
    revoke(token, None, Channel.CLI)
    resp = api.get("/api/v1/sessions")
    assert resp.status_code == 401
    assert resp.json() == {"error": "Missing, unknown or revoked API token."}


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Basic dXNlcjpwdw==", "Token rsn_x_y", "Bearer  "]
)
def test_malformed_authorization_headers_are_401(header: str, db: None) -> None:
    client = ApiClient(None)
    resp = client.client.get("/api/v1/sessions", HTTP_AUTHORIZATION=header)
    assert resp.status_code == 401


def test_openapi_document_is_public(db: None) -> None:
    resp = ApiClient(None).get("/api/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.json()["openapi"] == "3.1.0"


def test_wrong_method_is_405_json_with_allow(api: ApiClient, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    resp = api.post(f"/api/v1/sessions/{s.pk}", {})
    assert resp.status_code == 405
    assert resp["Allow"] == "GET"
    assert "not allowed" in resp.json()["error"]
    resp = api.get(f"/api/v1/sessions/{s.pk}/pause")
    assert resp.status_code == 405 and resp["Allow"] == "POST"


def test_unknown_api_route_is_json_404(api: ApiClient) -> None:
    for url in ("/api/v1/nope", "/api/v1/sessions/", "/api/v1/sessions/-1", "/api/v1/sessions/x"):
        resp = api.get(url)
        assert resp.status_code == 404, url
        assert resp["Content-Type"] == "application/json"
        assert "No such API route" in resp.json()["error"]


# --- create --------------------------------------------------------------------------------


def test_create_session(api: ApiClient, org_a, pool_a) -> None:  # type: ignore[no-untyped-def]
    resp = api.post("/api/v1/sessions", BODY)
    assert resp.status_code == 202, resp.content
    data = resp.json()
    session = Session.objects.get(pk=data["id"])
    assert session.org == org_a
    assert resp["Location"] == f"/api/v1/sessions/{session.pk}"
    assert data["state"] == session.state == SessionState.PROVISIONING
    assert data["issue"] == {
        "key": "ENG-142",
        "title": "Fix login",
        "url": "https://issues.example/ENG-142",
    }
    assert data["pool"] == "e2b-main"
    assert data["routing"]["chosen"] == "e2b-main"
    assert data["runtime_kinds"] == ["npm"] and data["requirement_kinds"] == ["git"]
    # Env values are never given back, only names.
    assert data["env_names"] == ["GITHUB_TOKEN"]
    assert "ghp_secret_value" not in resp.content.decode()
    event = AuditEvent.objects.get(action="session.created")
    assert event.channel == Channel.API and event.org == org_a
    assert "ghp_secret_value" not in str(event.detail)


def test_create_with_a_named_pool_and_null_optionals(api: ApiClient, pool_a) -> None:  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {
        "issue": {"key": "ENG-7"},
        "runtime_kinds": [],
        "requirement_kinds": [],
        "env": None,
        "pool": "e2b-main",
    }
    resp = api.post("/api/v1/sessions", body)
    assert resp.status_code == 202, resp.content
    assert resp.json()["requested_pool"] == "e2b-main"
    assert resp.json()["issue"] == {"key": "ENG-7", "title": "", "url": ""}


def test_create_without_any_pool_fails_the_session_plainly(api: ApiClient) -> None:
    resp = api.post("/api/v1/sessions", BODY)
    assert resp.status_code == 202
    assert resp.json()["state"] == "failed"
    assert "no capacity pools" in resp.json()["last_error"]


@pytest.mark.parametrize(
    ("raw", "content_type", "field", "words"),
    [
        ("issue=ENG-1", "application/x-www-form-urlencoded", "body", "Content-Type"),
        ('{"issue": ', "application/json", "body", "not valid JSON"),
        ("[1, 2]", "application/json", "body", "JSON object"),
        ('"text"', "application/json", "body", "JSON object"),
        (b"\xff\xfe{}", "application/json", "body", "not valid JSON"),
        ("", "application/json", "body", "JSON"),  # the test client drops the type too
        ("[" * 100_000, "application/json", "body", "not valid JSON"),
    ],
)
def test_create_refuses_what_is_not_a_json_object(  # type: ignore[no-untyped-def]
    api: ApiClient, raw, content_type, field, words
) -> None:
    resp = api.post("/api/v1/sessions", raw=raw, content_type=content_type)
    assert resp.status_code == 400
    data = resp.json()
    assert field in data["fields"] and words in data["fields"][field]
    assert Session.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"issue": None}, "issue"),
        ({"issue": "ENG-1"}, "issue"),
        ({"issue": {}}, "issue.key"),
        ({"issue": {"key": ""}}, "issue.key"),
        ({"issue": {"key": 142}}, "issue.key"),
        ({"issue": {"key": "E" * 65}}, "issue.key"),
        ({"issue": {"key": "ENG 1"}}, "issue.key"),  # the engine's key rule
        ({"issue": {"key": "ENG-1\u0000"}}, "issue.key"),
        ({"issue": {"key": "ENG-1", "title": ["x"]}}, "issue.title"),
        ({"issue": {"key": "ENG-1", "url": "javascript:alert(1)"}}, "issue.url"),
        ({"issue": {"key": "ENG-1", "url": "https://a b.example/"}}, "issue.url"),
        ({"issue": {"key": "ENG-1", "url": "https://nodot"}}, "issue.url"),
        ({"issue": {"key": " ENG-1"}}, "issue.key"),
        ({"issue": {"key": "ENG-1", "color": "red"}}, "issue.color"),
        ({"runtime_kinds": "npm"}, "runtime_kinds"),
        ({"runtime_kinds": [1]}, "runtime_kinds[0]"),
        ({"runtime_kinds": ["cobol"]}, "runtime_kinds"),  # unknown kind, as the engine says
        ({"requirement_kinds": ["teleport"]}, "requirement_kinds"),
        ({"requirement_kinds": None}, "requirement_kinds"),
        ({"env": ["A=1"]}, "env"),
        ({"env": {"1BAD": "x"}}, "env.1BAD"),
        ({"env": {"GOOD": 1}}, "env.GOOD"),
        ({"pool": 3}, "pool"),
        ({"pool": "nowhere"}, "pool"),  # unknown pool, as the engine says
        ({"extra": True}, "extra"),
    ],
)
def test_create_names_the_bad_field(api: ApiClient, pool_a, change, field) -> None:  # type: ignore[no-untyped-def]
    body = {**BODY, **change}
    resp = api.post("/api/v1/sessions", body)
    assert resp.status_code == 400, resp.content
    data = resp.json()
    assert list(data["fields"]) == [field], data
    assert data["error"]
    assert Session.objects.count() == 0


@pytest.mark.parametrize("missing", ["issue", "runtime_kinds", "requirement_kinds"])
def test_create_requires_fields(api: ApiClient, missing: str) -> None:
    body = {k: v for k, v in BODY.items() if k != missing}
    resp = api.post("/api/v1/sessions", body)
    assert resp.status_code == 400
    assert missing in resp.json()["fields"]


def test_idempotent_create(api: ApiClient, pool_a) -> None:  # type: ignore[no-untyped-def]
    first = api.post("/api/v1/sessions", BODY, headers={"Idempotency-Key": "req-1"})
    assert first.status_code == 202
    # The same body, keys in another order: the same session, the same JSON.
    reordered = {k: BODY[k] for k in reversed(list(BODY))}
    again = api.post("/api/v1/sessions", reordered, headers={"Idempotency-Key": "req-1"})
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Session.objects.count() == 1
    # A different body under the same key is refused.
    other = {**BODY, "runtime_kinds": ["python-pip"]}
    conflict = api.post("/api/v1/sessions", other, headers={"Idempotency-Key": "req-1"})
    assert conflict.status_code == 409
    assert "Idempotency-Key" in conflict.json()["fields"]
    assert Session.objects.count() == 1
    # Another key makes another session.
    assert (
        api.post("/api/v1/sessions", BODY, headers={"Idempotency-Key": "req-2"}).json()["id"]
        != first.json()["id"]
    )


def test_idempotency_keys_are_per_org(api: ApiClient, api_b: ApiClient, pool_a) -> None:  # type: ignore[no-untyped-def]
    a = api.post("/api/v1/sessions", BODY, headers={"Idempotency-Key": "shared"})
    b = api_b.post("/api/v1/sessions", BODY, headers={"Idempotency-Key": "shared"})
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize("key", ["x" * 256, " padded", "tab\there", "é"])
def test_bad_idempotency_key_is_400(api: ApiClient, key: str) -> None:
    resp = api.post("/api/v1/sessions", BODY, headers={"Idempotency-Key": key})
    assert resp.status_code == 400
    assert "Idempotency-Key" in resp.json()["fields"]


# --- read ----------------------------------------------------------------------------------


def test_get_session(api: ApiClient, session_factory, pool_a) -> None:  # type: ignore[no-untyped-def]
    s = session_factory(pool=pool_a, env={"SECRET": "encrypted-blob"})
    resp = api.get(f"/api/v1/sessions/{s.pk}")
    assert resp.status_code == 200
    data = resp.json()
    assert data["id"] == s.pk and data["state"] == "running"
    assert data["sandbox_id"] == s.sandbox_id and data["vcpu"] == 2 and data["memory_mb"] == 1024
    assert data["env_names"] == ["SECRET"] and "encrypted-blob" not in resp.content.decode()
    assert set(data["allowed_actions"]) == {"pause", "terminate", "exec"}
    assert data["created_at"].endswith("Z")


def test_another_orgs_session_is_404_on_every_route(  # type: ignore[no-untyped-def]
    api_b: ApiClient, session_factory
) -> None:
    s = session_factory()
    run = CommandRun.objects.create(session=s, command="true", state=CommandRunState.DONE)
    checked = 0
    for path, methods in api_routes():
        if "{session_id}" not in path:
            continue
        url = concrete(path, s.pk, run.pk)
        for method in methods:
            resp = api_b.get(url) if method == "GET" else api_b.post(url, {"command": "id"})
            assert resp.status_code == 404, (method, url)
            assert resp.json()["error"]
            checked += 1
    assert checked == 6
    s.refresh_from_db()
    assert s.state == "running" and not CommandRun.objects.exclude(pk=run.pk).exists()


def test_huge_ids_are_404_not_500(api: ApiClient) -> None:
    for url in (
        "/api/v1/sessions/99999999999999999999999",
        "/api/v1/sessions/1/exec/99999999999999999999999",
    ):
        assert api.get(url).status_code == 404


def test_list_filters_and_pages(api: ApiClient, session_factory, org_b) -> None:  # type: ignore[no-untyped-def]
    running = [session_factory() for _ in range(3)]
    paused = session_factory(SessionState.PAUSED, issue="ENG-9")
    session_factory(org=org_b)  # never listed
    resp = api.get("/api/v1/sessions")
    assert resp.status_code == 200
    assert [s["id"] for s in resp.json()["results"]] == [
        paused.pk,
        *[s.pk for s in reversed(running)],
    ]
    assert resp.json()["next_cursor"] is None
    assert [
        s["id"] for s in api.get("/api/v1/sessions", {"state": "paused"}).json()["results"]
    ] == [paused.pk]
    assert [s["id"] for s in api.get("/api/v1/sessions", {"issue": "ENG-9"}).json()["results"]] == [
        paused.pk
    ]
    # Walk the pages two at a time.
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/sessions", params).json()
        seen += [s["id"] for s in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [paused.pk, *[s.pk for s in reversed(running)]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "sleeping"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "0"}, "cursor"),
        ({"cursor": "99999999999999999999"}, "cursor"),
        ({"issue": "ENG\u0000"}, "issue"),
        ({"issue": "E" * 65}, "issue"),
    ],
)
def test_list_rejects_bad_query(api: ApiClient, params, field) -> None:  # type: ignore[no-untyped-def]
    resp = api.get("/api/v1/sessions", params)
    assert resp.status_code == 400
    assert field in resp.json()["fields"]


def test_unknown_query_parameters_are_400_naming_them(api: ApiClient, session_factory) -> None:  # type: ignore[no-untyped-def]
    resp = api.get("/api/v1/sessions", {"limit": "5", "colour": "red"})
    assert resp.status_code == 400
    assert resp.json()["fields"] == {
        "colour": "Unknown query parameter. Expected one of: cursor, issue, limit, state."
    }
    s = session_factory()
    resp = api.post(f"/api/v1/sessions/{s.pk}/pause?force=1")
    assert resp.status_code == 400
    assert resp.json()["fields"] == {"force": "Unknown query parameter: this operation takes none."}
    s.refresh_from_db()
    assert s.state == "running"  # nothing was done
    # Strangers still get the 401 first.
    assert ApiClient(None).get("/api/v1/sessions", {"colour": "red"}).status_code == 401


def test_unknown_body_fields_name_the_fields_there_are(api: ApiClient) -> None:
    resp = api.post("/api/v1/sessions", {**BODY, "colour": "red"})
    assert resp.json()["fields"] == {
        "colour": "Unknown field. Expected one of: env, issue, pool, requirement_kinds, "
        "runtime_kinds."
    }
