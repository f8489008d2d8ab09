"""The event feed and webhook endpoints through the JSON API, checked against the document."""

from __future__ import annotations

from typing import Any

import pytest

from events.models import Delivery, Event, WebhookEndpoint
from events.outbox import emit
from events.publish import publish
from events.types import POOL_HEALTH_CHANGED, SANDBOX_COST, SESSION_CREATED, SESSION_ENDED
from rensei.models import Channel, Organization
from rensei.tokens import SCOPES, create_token
from tests.sessions_web.conftest import ApiClient
from tests.sessions_web.test_openapi import EVENTS_PATHS, Checker, send

pytestmark = pytest.mark.django_db
HOOKS = "/api/v1/webhooks"
ONE = "/api/v1/webhooks/{webhook_id}"


def client(org: Organization, *scopes: str) -> ApiClient:
    return ApiClient(create_token(org, "t", None, Channel.CLI, scopes=scopes or SCOPES)[1])


@pytest.fixture
def doc(db: None) -> dict[str, Any]:
    document: dict[str, Any] = ApiClient(None).get("/api/v1/openapi.json").json()
    return document


class Check(Checker):
    def __call__(self, path: str, method: str, resp: Any) -> Any:
        if resp.status_code == 204:
            assert "204" in self.doc["paths"][path][method]["responses"]
            assert resp.content == b""
            self.seen.add((path, method, "204"))
            return None
        return super().__call__(path, method, resp)


def at(path: str, webhook: int = 0, delivery: int = 0) -> str:
    return path.replace("{webhook_id}", str(webhook)).replace("{delivery_id}", str(delivery))


def test_every_documented_answer(
    doc: dict[str, Any], org_a: Organization, org_b: Organization
) -> None:
    check = Check(doc)
    api, api_b = client(org_a), client(org_b)
    feed = "/api/v1/events"
    emit(org_a.pk, POOL_HEALTH_CHANGED, {"pool": {"name": "p"}})
    publish()
    page = check(feed, "get", api.get(feed))
    assert [e["type"] for e in page["results"]] == [POOL_HEALTH_CHANGED]
    check(feed, "get", api.get(feed, {"types": "session.exploded"}))

    made = check(HOOKS, "post", api.post(HOOKS, {"url": "http://127.0.0.1:9/h"}))
    secret = made["secret"]
    assert secret.startswith("whsec_") and made["secret_last4"] == secret[-4:]
    check(HOOKS, "post", api.post(HOOKS, {"url": "http://10.0.0.1/h"}))
    listed = check(HOOKS, "get", api.get(HOOKS))
    assert secret not in str(listed) and listed["results"][0]["id"] == made["id"]
    one = at(ONE, made["id"])
    got = check(ONE, "get", api.get(one))
    assert "secret" not in got
    check(ONE, "get", api_b.get(one))
    patch = send(api, "patch", one, {"event_types": ["session.ended"], "enabled": False})
    assert check(ONE, "patch", patch)["event_types"] == ["session.ended"]
    check(ONE, "patch", send(api, "patch", one, {"url": "ftp://x"}))
    check(ONE, "patch", send(api_b, "patch", one, {"enabled": True}))
    send(api, "patch", one, {"enabled": True, "event_types": []})

    rotate = f"{ONE}/rotate-secret"
    rotated = check(rotate, "post", api.post(at(rotate, made["id"]), {"overlap_hours": 1}))
    assert rotated["secret"] != secret and rotated["previous_secret_until"]
    check(rotate, "post", api.post(at(rotate, made["id"]), {"overlap_hours": 1000}))
    check(rotate, "post", api_b.post(at(rotate, made["id"]), {}))

    test = f"{ONE}/test"
    sent = check(test, "post", api.post(at(test, made["id"])))
    assert sent["event"]["type"] == "webhook.test" and sent["state"] == "pending"
    check(test, "post", api_b.post(at(test, made["id"])))

    deliveries = f"{ONE}/deliveries"
    log = check(deliveries, "get", api.get(at(deliveries, made["id"])))
    assert [d["id"] for d in log["results"]] == [sent["id"]]
    check(deliveries, "get", api.get(at(deliveries, made["id"]), {"limit": 0}))
    check(deliveries, "get", api_b.get(at(deliveries, made["id"])))

    again = f"{ONE}/deliveries/{{delivery_id}}/redeliver"
    url = at(again, made["id"], sent["id"])
    check(again, "post", api.post(url))  # still pending: 409
    Delivery.objects.filter(pk=sent["id"]).update(state="failed")
    assert check(again, "post", api.post(url))["state"] == "pending"
    check(again, "post", api_b.post(url))

    check(ONE, "delete", send(api_b, "delete", one, {}))
    check(ONE, "delete", send(api, "delete", one, {}))
    assert not WebhookEndpoint.objects.exists()

    # The generic answers: unknown query (400), no token (401), a token without the scope.
    narrow = {s: client(org_a, s) for s in SCOPES}
    for path, operations in doc["paths"].items():
        if not path.startswith(EVENTS_PATHS):
            continue
        url = at(path, 1, 1)
        for method, op in operations.items():
            check(path, method, send(api, method, url + "?colour=red", {}))
            check(path, method, send(ApiClient(None), method, url, {}))
            other = next(c for s, c in narrow.items() if s != op["x-required-scope"])
            refused = check(path, method, send(other, method, url, {}))
            assert refused["missing_scope"] == op["x-required-scope"]

    documented = {
        (path, method, status)
        for path, operations in doc["paths"].items()
        if path.startswith(EVENTS_PATHS)
        for method, op in operations.items()
        for status in op["responses"]
    }
    assert documented - check.seen == set()


def test_the_feed_pages_by_cursor_filters_by_type_and_keeps_to_its_org(
    org_a: Organization, org_b: Organization
) -> None:
    api = client(org_a, "events:read")
    for n in range(5):
        emit(org_a.pk, SESSION_CREATED if n % 2 else SESSION_ENDED, {"n": n}, session_id=1)
    emit(org_b.pk, SANDBOX_COST, {"theirs": True}, session_id=2)
    emit(org_a.pk, "webhook.test", {})
    assert api.get("/api/v1/events").json()["results"] == []  # not published yet
    publish()
    first = api.get("/api/v1/events", {"limit": 2}).json()
    assert [e["data"]["n"] for e in first["results"]] == [0, 1] and first["has_more"]
    rest = api.get("/api/v1/events", {"after": first["next_cursor"]}).json()
    assert [e["data"]["n"] for e in rest["results"]] == [2, 3, 4] and not rest["has_more"]
    assert [e["sequence"] for e in rest["results"]] == [3, 4, 5]
    idle = api.get("/api/v1/events", {"after": rest["next_cursor"]}).json()
    assert idle == {"results": [], "next_cursor": rest["next_cursor"], "has_more": False}
    ended = api.get("/api/v1/events", {"types": "session.ended"}).json()["results"]
    assert [e["data"]["n"] for e in ended] == [0, 2, 4]
    both = api.get("/api/v1/events", {"types": "session.ended,session.created"}).json()
    assert len(both["results"]) == 5
    bad = api.get("/api/v1/events", {"types": "session.ended,nope"})
    assert bad.status_code == 400 and "Unknown event type" in bad.json()["fields"]["types"]
    assert api.get("/api/v1/events", {"after": -1}).status_code == 400
    event = first["results"][0]
    stored = Event.objects.get(uid=event["id"])
    assert event["occurred_at"].endswith("Z") and event["org"] == "org-a"
    assert stored.org_id == org_a.pk
