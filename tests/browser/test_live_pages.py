"""Pages follow changes made elsewhere, with no reload.

A dispatcher drives sessions through the JSON API while Alice watches: the session page,
the dashboard and Capacity must say what is true within a polling interval. The stack is
real (live server, Celery worker, E2B emulator); the API calls go to the live server over
loopback, the jobs they enqueue run in the worker. Every step waits for what a person
sees, and the page is marked first and must still be the same document afterwards.
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import expect

from pools.config import validate_e2b_config
from pools.models import CapacityPool
from rensei.models import Channel, Organization
from rensei.tokens import SCOPES, create_token
from sessions.models import Session, SessionState
from sessions.templatetags.sessions_extras import duration
from tests.browser.conftest import JOB_TIMEOUT, login, mark_page, same_page, shot
from tests.emulator.helpers import wait_for
from tests.factories import CapacityPoolFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STATUS_PARTIAL = re.compile(r"/sessions/\d+/status/(\?.*)?$")
# No proxy: the API is the live server on loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Dispatcher:
    """What an API client does: bearer token, JSON bodies."""

    def __init__(self, base: str, org: Organization) -> None:
        _, self.token = create_token(org, "dispatcher", None, Channel.CLI, scopes=SCOPES)
        self.base = base

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.base}/api/v1/{path}",
            data=json.dumps(body or {}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        with _opener.open(request, timeout=30) as resp:
            assert resp.status == 202, resp.status
            return dict(json.loads(resp.read()))

    def create(self, key: str, pool: str) -> int:
        body = {"issue": {"key": key}, "runtime_kinds": [], "requirement_kinds": [], "pool": pool}
        return int(self.post("sessions", body)["id"])


def e2b_pool(org: Organization) -> CapacityPool:
    return CapacityPoolFactory.create(
        org=org,
        name="live-e2b",
        provider="e2b",
        config=validate_e2b_config({"templateId": "donmai-worker"}),
    )


def console_errors(page: Any) -> list[str]:
    """Errors the page logs (htmx logs one for an out-of-band swap without a target)."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def card(page: Any, label: str) -> Any:
    """A dashboard count card's number."""
    return page.locator(".stat-card", has=page.get_by_text(label, exact=True)).locator(".value")


def count_cell(page: Any, pool: CapacityPool, column: str) -> Any:
    """A pool's Running or Paused cell on the Capacity page."""
    cells = page.locator(f"tr#pool-{pool.pk} td.text-end")
    return cells.nth({"running": 0, "paused": 1}[column])


def wait_state(session_id: int, state: str) -> None:
    found = wait_for(
        lambda: Session.objects.filter(pk=session_id, state=state).exists(),
        timeout=JOB_TIMEOUT / 1000,
    )
    assert found, f"session {session_id} never became {state}"


def test_session_page_follows_pause_resume_and_terminate_made_through_the_api(  # type: ignore[no-untyped-def]
    stack, page, alice, org_a
) -> None:
    e2b_pool(org_a)
    api = Dispatcher(stack["url"], org_a)
    session_id = api.create("ENG-31", "live-e2b")
    wait_state(session_id, SessionState.RUNNING)

    errors = console_errors(page)
    login(page, stack["url"], "alice", "pw-alice")
    page.goto(f"{stack['url']}/sessions/{session_id}/")
    status = page.locator("#session-status")
    badge = status.locator(".badge").first
    cost = page.locator("section[aria-labelledby=session-cost-heading]")
    timeline = status.get_by_role("table", name="State changes, oldest first")
    command = page.get_by_label("Command")
    expect(badge).to_have_text("Running")
    expect(status.get_by_role("button", name="Pause")).to_be_visible()
    expect(cost).to_contain_text("0 ledger rows")
    mark_page(page)

    # The running-time counter moves by itself, and a command being typed survives the polls.
    running = page.locator("#time-running")
    shown = running.inner_text()
    command.fill("echo typed before the polls")
    expect(running).not_to_have_text(shown, timeout=JOB_TIMEOUT)
    with page.expect_response(re.compile(rf"/sessions/{session_id}/status/")):
        pass
    expect(command).to_have_value("echo typed before the polls")
    # Between polls the counters count on by themselves: with the polls cut off they still move.
    page.route(STATUS_PARTIAL, lambda route: route.abort())
    for counter in (running, timeline.locator("tbody tr").last.locator("td").nth(2)):
        shown = counter.inner_text()
        expect(counter).not_to_have_text(shown, timeout=JOB_TIMEOUT)
    page.unroute(STATUS_PARTIAL)
    with page.expect_response(STATUS_PARTIAL):
        pass
    errors.clear()  # the cut-off polls were logged as failed requests
    shot(page, "live-1-running")

    # -- paused through the API -------------------------------------------------------------
    api.post(f"sessions/{session_id}/pause")
    expect(badge).to_have_text("Paused", timeout=JOB_TIMEOUT)
    expect(status.get_by_role("button", name="Pause")).to_have_count(0)
    expect(status.get_by_role("button", name="Resume")).to_be_visible()
    expect(command).to_have_count(0)
    expect(page.locator("#exec-console")).to_contain_text(
        "Commands run only while the session is running."
    )
    expect(cost).to_contain_text("1 ledger row")
    expect(timeline.locator("tbody tr").last).to_contain_text("pausing → paused")
    assert same_page(page)
    shot(page, "live-2-paused")

    # -- resumed through the API: the exec form is back -----------------------------------------
    api.post(f"sessions/{session_id}/resume")
    expect(badge).to_have_text("Running", timeout=JOB_TIMEOUT)
    expect(status.get_by_role("button", name="Pause")).to_be_visible()
    expect(command).to_be_visible()

    # -- terminated through the API -----------------------------------------------------------
    api.post(f"sessions/{session_id}/terminate")
    expect(badge).to_have_text("Terminated", timeout=JOB_TIMEOUT)
    expect(status.get_by_role("button")).to_have_count(0)
    expect(command).to_have_count(0)
    expect(cost).to_contain_text("2 ledger rows")
    expect(timeline.locator("tbody tr").last).to_contain_text("terminating → terminated")
    # Everything on the page is final now: it stops asking.
    expect(status).not_to_have_attribute("hx-trigger", re.compile(".*"))
    assert same_page(page)
    assert errors == []
    shot(page, "live-3-terminated")


def test_terminate_from_the_page_updates_console_cost_and_timers(stack, page, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    e2b_pool(org_a)
    api = Dispatcher(stack["url"], org_a)
    session_id = api.create("ENG-33", "live-e2b")
    wait_state(session_id, SessionState.RUNNING)
    errors = console_errors(page)
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, stack["url"], "alice", "pw-alice")
    page.goto(f"{stack['url']}/sessions/{session_id}/")
    status = page.locator("#session-status")
    cost = page.locator("section[aria-labelledby=session-cost-heading]")
    expect(status.locator(".badge").first).to_have_text("Running")
    expect(cost).to_contain_text("0 ledger rows")
    mark_page(page)

    status.get_by_role("button", name="Terminate").click()
    expect(page.get_by_text(f"Terminating session {session_id}…")).to_be_visible()
    # Terminating already: no command can run, whatever the job is doing.
    expect(page.get_by_label("Command")).to_have_count(0)
    expect(status.locator(".badge").first).to_have_text("Terminated", timeout=JOB_TIMEOUT)
    expect(cost).to_contain_text("1 ledger row", timeout=JOB_TIMEOUT)
    # The running time is final: what the ledger billed, and the page stops polling.
    expect(status).not_to_have_attribute("hx-trigger", re.compile(".*"))
    billed = Session.objects.get(pk=session_id).intervals.get()
    assert billed.ended_at is not None
    seconds = (billed.ended_at - billed.started_at).total_seconds()
    expect(page.locator("#time-running")).to_have_text(duration(seconds))
    assert same_page(page)
    assert errors == []
    shot(page, "live-7-terminated-from-the-page")


def test_dashboard_and_capacity_counts_follow_the_api(stack, page, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    pool = e2b_pool(org_a)
    api = Dispatcher(stack["url"], org_a)
    login(page, stack["url"], "alice", "pw-alice")
    dashboard = page
    errors = console_errors(dashboard)
    running_card = card(dashboard, "Running")
    expect(dashboard.get_by_text("No sessions yet.")).to_be_visible()
    expect(running_card).to_have_text("0")
    mark_page(dashboard)

    capacity = dashboard.context.new_page()
    errors += console_errors(capacity)
    capacity.goto(f"{stack['url']}/settings/execution/capacity/")
    pool_running = count_cell(capacity, pool, "running")
    expect(pool_running).to_have_text("0")
    mark_page(capacity)

    session_id = api.create("ENG-32", "live-e2b")
    dashboard.bring_to_front()
    expect(running_card).to_have_text("1", timeout=JOB_TIMEOUT)
    recent = dashboard.get_by_role("table", name="The latest sessions")
    expect(recent.get_by_role("row").nth(1)).to_contain_text(f"#{session_id} ENG-32 Running")
    assert same_page(dashboard)
    shot(dashboard, "live-4-dashboard-running")

    capacity.bring_to_front()
    expect(pool_running).to_have_text("1", timeout=JOB_TIMEOUT)
    assert same_page(capacity)
    shot(capacity, "live-5-capacity-running")

    api.post(f"sessions/{session_id}/pause")
    expect(count_cell(capacity, pool, "paused")).to_have_text("1", timeout=JOB_TIMEOUT)
    expect(pool_running).to_have_text("0")
    dashboard.bring_to_front()
    expect(running_card).to_have_text("0", timeout=JOB_TIMEOUT)
    expect(card(dashboard, "Paused")).to_have_text("1")
    expect(recent.get_by_role("row").nth(1)).to_contain_text(f"#{session_id} ENG-32 Paused")
    assert same_page(dashboard) and same_page(capacity)
    assert errors == []
    shot(dashboard, "live-6-dashboard-paused")


def test_counters_between_polls_read_as_the_server_writes_them(live_server, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/accounts/login/")
    for seconds in (0, 7, 59, 60, 65, 3599, 3600, 7325, 86399, 86400, 200000):
        shown = page.evaluate(f"renseiDuration({seconds} + 0.6)")
        assert shown == duration(seconds + 0.6), seconds
