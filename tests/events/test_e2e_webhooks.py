"""Acceptance: a session driven through the API (real Celery worker, real E2B SDK, the
emulator) create → running → pause → resume → exec → terminate produces the documented
events in order, each once in the feed, and a real HTTP receiver on loopback gets them,
signed, in the same order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from events.tasks import drain_once
from pools.e2b_emulator.testing import RunningEmulator
from pools.models import CapacityPool
from rensei.models import Channel, Organization
from rensei.tokens import SCOPES, create_token
from tests.emulator.helpers import wait_for
from tests.events.receiver import receiver
from tests.sessions_engine.conftest import ensure_rate_cards
from tests.sessions_web.conftest import ApiClient
from tests.sessions_web.test_e2e_api import poll
from tests.worker import emulator_with_worker

API_KEY = "e2b_events_e2e_key"
WAIT = 60  # seconds: a bound for polling, not a timing assertion
SESSION_EVENTS = [
    "session.created",
    "session.running",
    "session.paused",
    "session.resumed",
    "session.exec.finished",
    "session.ended",
]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def emulator_and_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[RunningEmulator]:
    with emulator_with_worker(django_db_blocker, api_key=API_KEY) as (emu, _worker):
        yield emu


def test_a_sessions_life_reaches_the_receiver_signed_and_in_order(
    emulator_and_worker: RunningEmulator, org_a: Organization
) -> None:
    ensure_rate_cards()
    CapacityPool.objects.create(
        org=org_a, name="demo-e2b", provider="e2b", config={"templateId": "donmai-worker"}
    )
    api = ApiClient(create_token(org_a, "dispatcher", None, Channel.CLI, scopes=SCOPES)[1])
    with receiver() as rx:
        hook = api.post("/api/v1/webhooks", {"url": rx.url})
        assert hook.status_code == 201, hook.content
        secret = hook.json()["secret"]

        created = api.post(
            "/api/v1/sessions",
            {"issue": {"key": "ENG-17"}, "runtime_kinds": ["npm"], "requirement_kinds": []},
        )
        assert created.status_code == 202, created.content
        url = created["Location"]
        poll(api, url, "state", "running", "failed")
        assert api.post(f"{url}/pause").json()["accepted"] is True
        poll(api, url, "state", "paused")
        assert api.post(f"{url}/resume").json()["accepted"] is True
        poll(api, url, "state", "running")
        run = api.post(f"{url}/exec", {"command": "which donmai"})
        poll(api, run["Location"], "state", "done", "error")
        assert api.post(f"{url}/terminate").json()["accepted"] is True
        poll(api, url, "state", "terminated")
        session_id = created.json()["id"]

        def all_arrived() -> bool:
            drain_once(budget_seconds=5)
            types = [e["type"] for e in rx.events() if e["session_id"] == session_id]
            return "session.ended" in types and types.count("sandbox.cost") == 2

        wait_for(all_arrived, timeout=WAIT, interval=0.2)
        received = [r for r in rx.received if r.json["session_id"] == session_id]

    types = [r.json["type"] for r in received]
    assert [t for t in types if t != "sandbox.cost"] == SESSION_EVENTS
    assert types == [
        "session.created",
        "session.running",
        "session.paused",
        "sandbox.cost",
        "session.resumed",
        "session.exec.finished",
        "session.ended",
        "sandbox.cost",
    ]
    assert [r.json["sequence"] for r in received] == list(range(1, 9))
    assert all(r.signed_by(secret) for r in received)
    assert len({r.json["id"] for r in received}) == len(received)  # each once
    ended = received[6].json["data"]
    assert ended["outcome"] == "terminated" and ended["session"]["state"] == "terminated"
    assert received[5].json["data"]["run"]["exit_code"] == 0
    assert received[3].json["data"]["inState"] == "running"

    # The feed has the same events, each once, in the same order.
    feed = api.get("/api/v1/events", {"limit": 500}).json()["results"]
    mine = [e for e in feed if e["session_id"] == session_id]
    assert [e["id"] for e in mine] == [r.json["id"] for r in received]
