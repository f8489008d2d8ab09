"""Org B asks for org A's things through every URL pattern: 404, and no foreign rows.

The URL patterns come from the URLconf itself (routes.py), so a new view joins the matrix
by itself and a new parameterised view without a case in ROUTE_ARGS fails here by name.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.reliability.routes import (
    OWN_ORG_ROUTES,
    ROUTE_ARGS,
    World,
    build_world,
    product_routes,
    snapshot,
    uncovered,
    url_of,
)

# Lists and exports where org A's own rows must show up for org A (so the "no foreign
# rows" check for org B can fail): route name → query string.
LISTS_WITH_ROWS = {
    "dashboard": "",
    "session_list": "",
    "capacity": "",
    "api_tokens": "",
    "ledger": "",
    "cost_per_issue": "",
    "api_sessions": "",
}
CSV_EXPORT = ("cost_per_issue", "format=csv")
NEVER_POST = {"logout"}  # would end the outsider's session half-way through the matrix


@pytest.fixture
def worlds(org_a, org_b, alice, charlie, settings):  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = ""
    settings.E2B_API_URL = settings.E2B_SANDBOX_URL = "http://127.0.0.1:9"  # never the internet
    return build_world(org_a, alice, "ORGA"), build_world(org_b, charlie, "ORGB")


def _leaks(content: bytes, world: World) -> list[str]:
    text = content.decode("utf-8", errors="replace")
    return [m for m in world.markers if m in text]


def _api(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_every_route_refuses_another_orgs_objects(  # type: ignore[no-untyped-def]
    worlds, client_as, figure
):
    fig = figure("isolation_matrix")
    a, b = worlds
    routes = product_routes()
    missing = uncovered(routes)
    assert not missing, "URL patterns without an isolation case:\n" + "\n".join(missing)

    outsider = client_as(b.admin)
    outsider_api = _api(b.token_plaintext)
    before = snapshot(a)
    failures: list[str] = []
    counts = {"object routes": 0, "own-org routes": 0, "lists and pages": 0, "requests": 0}

    def check(label: str, response: Any, allowed: set[int], body: str = "") -> None:
        counts["requests"] += 1
        if response.status_code not in allowed:
            failures.append(f"{label}: {response.status_code}, expected {sorted(allowed)}")
        # What the request itself said (a URL, a filter value) may be echoed back.
        sent = label + body + json.dumps(getattr(response, "request", {}), default=str)
        if leaked := [m for m in _leaks(response.content, a) if m not in sent]:
            failures.append(f"{label}: org A's {leaked} in the response")

    for route in routes:
        if route.name in ("login",):
            continue  # not an org's page: the web-hardening suite covers it
        if route.name in ("metrics",):
            continue  # no org's data, behind its own bearer token: tests/test_operations.py
        if route.params and route.name not in OWN_ORG_ROUTES:
            counts["object routes"] += 1
            url = url_of(route, a)
            if route.is_api:
                got = [outsider_api.get(url), outsider_api.post(url, {}, "application/json")]
                for resp, method in zip(got, ("GET", "POST"), strict=True):
                    check(f"API {method} {url}", resp, {404, 405})
                statuses = {r.status_code for r in got}
            else:
                got = [
                    outsider.get(url),
                    outsider.htmx("get", url),
                    outsider.htmx("post", url, {"command": "id", "timeout": "5"}),
                    outsider.post(url, {"command": "id", "timeout": "5"}),
                ]
                for resp, how in zip(got, ("GET", "htmx GET", "htmx POST", "POST"), strict=True):
                    check(f"{how} {url}", resp, {404, 405})
                statuses = {r.status_code for r in got}
            if 404 not in statuses:
                failures.append(f"{url}: never answered 404 ({sorted(statuses)})")
            continue

        # Unparameterised (or own-org) routes: what B sees must hold none of A's rows.
        counts["own-org routes" if route.params else "lists and pages"] += 1
        url = url_of(route, b)
        if route.is_api:
            check(f"API GET {url}", outsider_api.get(url), {200, 404, 405})
            continue
        check(f"GET {url}", outsider.get(url), {200, 302, 405})
        check(f"htmx GET {url}", outsider.htmx("get", url), {200, 286, 302, 405})
        if route.name not in NEVER_POST:
            resp = outsider.htmx("post", url, {})
            check(f"htmx POST {url}", resp, {200, 302, 400, 403, 404, 405})

    # Foreign ids inside bodies and query strings.
    ids = [str(a.session.pk), str(a.paused_session.pk)]
    body_cases = [
        ("switch to org A", outsider.post(reverse("switch_org"), {"org": a.org.pk}), {404}),
        (
            "bulk-terminate org A's sessions",
            outsider.post(reverse("session_bulk_terminate"), {"ids": ids, "confirm": "yes"}),
            {302},
        ),
        (
            "new session on org A's pool",
            outsider.post(reverse("session_new"), {"pool": a.pool.pk, "issue_key": "X-1"}),
            {400},
        ),
        (
            "API session on org A's pool",
            outsider_api.post(
                reverse("api_sessions"),
                json.dumps(
                    {
                        "issue": {"key": "X-1"},
                        "runtime_kinds": [],
                        "requirement_kinds": [],
                        "pool": a.pool.name,
                    }
                ),
                "application/json",
            ),
            {400},
        ),
    ]
    for name in ("session_list", "ledger", "cost_per_issue"):
        for query in (f"pool={a.pool.pk}", f"session={a.session.pk}", f"issue={a.issue.key}"):
            url = f"{reverse(name)}?{query}"
            body_cases.append((f"GET {url}", outsider.get(url), {200}))
    for query in (f"issue={a.issue.key}", "state=running"):
        url = f"{reverse('api_sessions')}?{query}"
        body_cases.append((f"API GET {url}", outsider_api.get(url), {200}))
    for label, resp, allowed in body_cases:
        check(label, resp, allowed, body=a.pool.name if "pool" in label else "")
    for resp in (outsider_api.get(reverse("api_sessions")),):
        shown = {row["id"] for row in resp.json()["results"]}
        if shown & {a.session.pk, a.paused_session.pk}:
            failures.append(f"API list shows org A's sessions {shown}")

    # The exports as B: no A rows at all (a CSV is the easiest place to leak one).
    csv = outsider.get(f"{reverse(CSV_EXPORT[0])}?{CSV_EXPORT[1]}")
    check("CSV export", csv, {200})

    after = snapshot(a)
    if after != before:
        failures.append(f"org A changed: {before} → {after}")

    # The checks can fail: org A sees its own rows on the same lists and exports.
    owner = client_as(a.admin)
    owner_api = _api(a.token_plaintext)
    for name, query in [*LISTS_WITH_ROWS.items(), CSV_EXPORT]:
        url = reverse(name) + (f"?{query}" if query else "")
        resp = (owner_api if url.startswith("/api/") else owner).get(url)
        assert resp.status_code == 200, url
        assert _leaks(resp.content, a), f"{url}: org A's own rows are missing for org A"
    for route in routes:
        if route.params and route.name in ROUTE_ARGS:
            url = url_of(route, a)
            resp = owner_api.get(url) if route.is_api else owner.get(url)
            assert resp.status_code != 404, f"{url} is 404 for its own org: the case is wrong"

    fig.add(counts["requests"])
    fig.unit = "requests"
    fig.details = {
        "URL patterns walked": len(routes),
        "object routes (404 expected)": counts["object routes"],
        "own-org routes (org A unchanged)": counts["own-org routes"],
        "lists, pages and exports (no org A rows)": counts["lists and pages"],
        "foreign ids in bodies and query strings": len(body_cases),
        "failures": len(failures),
    }
    assert not failures, "\n".join(failures)
