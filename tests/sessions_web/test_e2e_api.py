"""The dispatcher's whole conversation over HTTP: JSON API → real Celery worker → real E2B
SDK → local emulator. create → running → exec ``which donmai`` → pause → resume →
terminate, then the session page shows the timeline it went through.

(The engine's own suite drives the same life through the service functions; this one goes
through the API routes, token auth included.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pools.e2b_emulator.testing import RunningEmulator
from pools.models import CapacityPool
from rensei.models import AuditEvent, Channel, Organization
from rensei.tokens import SCOPES, create_token
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards
from tests.sessions_web.conftest import ApiClient
from tests.worker import emulator_with_worker

API_KEY = "e2b_sessions_web_key"
WAIT = 60  # seconds: a bound for polling, not a timing assertion

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def emulator_and_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[RunningEmulator]:
    with emulator_with_worker(django_db_blocker, api_key=API_KEY) as (emu, _worker):
        yield emu


def poll(api: ApiClient, url: str, key: str, *wanted: str) -> dict[str, Any]:
    """GET ``url`` until its JSON ``key`` is one of ``wanted``; the last answer."""
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        resp = api.get(url)
        assert resp.status_code == 200, resp.content
        last = resp.json()
        return last[key] in wanted

    try:
        wait_for(check, timeout=WAIT, interval=0.1)
    except AssertionError:
        raise AssertionError(
            f"{url}: {key} is {last.get(key)!r}, wanted {wanted}: {last}"
        ) from None
    return last


def test_dispatcher_drives_a_session_through_the_api(  # type: ignore[no-untyped-def]
    emulator_and_worker: RunningEmulator, org_a: Organization, alice, client_as
) -> None:
    emu = emulator_and_worker.emulator
    ensure_rate_cards()
    CapacityPool.objects.create(
        org=org_a, name="demo-e2b", provider="e2b", config={"templateId": "donmai-worker"}
    )
    _, token = create_token(org_a, "dispatcher", None, Channel.CLI, scopes=SCOPES)
    api = ApiClient(token)

    created = api.post(
        "/api/v1/sessions",
        {
            "issue": {"key": "ENG-142", "title": "Fix the login page"},
            "runtime_kinds": ["npm"],
            "requirement_kinds": ["git"],
            "env": {"RENSEI_TOKEN": "tok-123"},
        },
        headers={"Idempotency-Key": "dispatch-ENG-142-1"},
    )
    assert created.status_code == 202, created.content
    url = created["Location"]
    session = poll(api, url, "state", "running", "failed")
    assert session["state"] == "running", session["last_error"]
    assert session["pool"] == "demo-e2b" and session["template"] == "donmai-worker"
    assert (session["vcpu"], session["memory_mb"]) == (2, 1024)
    sandbox_id = session["sandbox_id"]
    assert emu.sandboxes[sandbox_id].metadata["rensei_request"] == session["request_id"]
    assert set(session["allowed_actions"]) == {"pause", "terminate", "exec"}

    # One-shot exec: is the runner binary in the box?
    started = api.post(f"{url}/exec", {"command": "which donmai"})
    assert started.status_code == 202, started.content
    run = poll(api, started["Location"], "state", "done", "error")
    assert run["exit_code"] == 0, run
    assert run["stdout"].strip().endswith("/donmai")
    assert run["stderr"] == "" and run["stdout_truncated"] is False

    paused = api.post(f"{url}/pause")
    assert paused.status_code == 202 and paused.json()["accepted"] is True
    poll(api, url, "state", "paused")
    assert emu.sandbox_ids("paused") == [sandbox_id]
    assert api.post(f"{url}/exec", {"command": "id"}).status_code == 409

    assert api.post(f"{url}/resume").json()["accepted"] is True
    resumed = poll(api, url, "state", "running")
    assert resumed["sandbox_id"] in emu.sandbox_ids("running")

    assert api.post(f"{url}/terminate").json()["accepted"] is True
    ended = poll(api, url, "state", "terminated")
    assert ended["allowed_actions"] == [] and ended["ended_at"] is not None
    assert emu.sandbox_ids() == []
    assert api.post(f"{url}/terminate").status_code == 409

    # Every request was audited as coming through the API.
    actions = set(
        AuditEvent.objects.filter(org=org_a, channel=Channel.API).values_list("action", flat=True)
    )
    assert {
        "session.created",
        "session.command_run",
        "session.pause_requested",
        "session.resume_requested",
        "session.terminate_requested",
    } <= actions

    # The admin sees the same story on the session page.
    page = client_as(alice).get(f"/sessions/{session['id']}/").content.decode()
    for step in ("provisioning", "running", "pausing", "paused", "resuming", "terminated"):
        assert f'badge-state-{step}">{step}</span>' in page
    assert "which donmai" in page
