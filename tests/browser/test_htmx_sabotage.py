"""The journeys test what the user sees after htmx swaps, so a broken partial fails them.

Here the session page's status partial (the endpoint it polls) answers 500, as a broken
template or view would. The job still starts the sandbox, the database says running, yet the
admin journey's own step (`new_session`, then waiting for "Running") fails. Once the partial
answers again, the very same assertion passes: it is the swap that was being tested.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from pools.config import validate_e2b_config
from sessions.models import Session, SessionState
from tests.browser.conftest import JOB_TIMEOUT, login, mark_page, same_page
from tests.browser.test_admin_journey import new_session
from tests.emulator.helpers import wait_for
from tests.factories import CapacityPoolFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The poll carries a query string (which exec form the page shows).
STATUS_PARTIAL = re.compile(r"/sessions/\d+/status/(\?.*)?$")
# Sandbox creation is slowed so the page surely renders before the session runs.
CREATE_LATENCY_MS = 2500


def test_a_broken_status_partial_fails_the_admin_journey(stack, page, alice, org_a):  # type: ignore[no-untyped-def]
    CapacityPoolFactory.create(
        org=org_a,
        name="e2b-main",
        provider="e2b",
        config=validate_e2b_config({"templateId": "donmai-worker"}),
    )
    faults = stack["emulator"].emulator.faults
    sabotaged: list[str] = []

    def broken_partial(route: Any) -> None:
        sabotaged.append(route.request.url)
        route.fulfill(status=500, content_type="text/html", body="<h1>Server Error (500)</h1>")

    login(page, stack["url"], "alice", "pw-alice")
    page.route(STATUS_PARTIAL, broken_partial)
    faults.set_latency(CREATE_LATENCY_MS, "create")
    try:
        state = new_session(page, "ENG-9", "Sabotaged polling")
    finally:
        faults.set_latency(0, "create")
    mark_page(page)
    expect(state).to_have_text(re.compile(r"Queued|Provisioning"))

    # The job does its work: the session runs, in the database and in the emulator.
    session = wait_for(
        lambda: Session.objects.filter(issue__key="ENG-9", state=SessionState.RUNNING).first(),
        timeout=JOB_TIMEOUT / 1000,
    )
    assert session is not None and session.sandbox_id in stack["emulator"].emulator.sandboxes

    # The page polls, gets errors, and never shows it: the journey's assertion fails.
    with pytest.raises(AssertionError):
        expect(state).to_have_text("Running", timeout=7_000)  # two 3 s polls and a bit
    assert len(sabotaged) >= 2, "the page should have polled the status partial"

    # Repair the partial: the same assertion passes, with no reload.
    page.unroute(STATUS_PARTIAL)
    expect(state).to_have_text("Running", timeout=JOB_TIMEOUT)
    assert same_page(page)
