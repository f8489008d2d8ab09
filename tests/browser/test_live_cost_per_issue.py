"""Cost per Issue follows the ledger with no reload, and leaves alone a date being typed.

Fiona watches the default range while a sandbox's interval closes (the ledger row is written
by the code the jobs use) and starts typing a custom start date: the total and the issue's
row change by themselves in the same document, and the half-typed date, with the focus on it,
is still there after the polls. The polls are shortened to a second for the test.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.billing.helpers import make_session, run
from tests.browser.conftest import login, mark_page, same_page, shot
from tests.browser.data import CostHistory, cost_history
from tests.browser.test_finance_journey import cost_cell, money

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIGURES_POLL = re.compile(r"/analytics/cost-per-issue/\?")
# A few of the test's one-second polls, with room for a busy machine.
POLL_WAIT = 15_000


def total_card(page: Any) -> Any:
    return page.locator(".stat-card", has=page.get_by_text("Total cost", exact=True)).locator(
        ".value"
    )


def test_cost_per_issue_updates_in_place_and_keeps_a_date_being_typed(  # type: ignore[no-untyped-def]
    live_server, page, fiona, org_a, settings
) -> None:
    settings.RENSEI_BILLING_POLL_SECONDS = 1
    history = cost_history(org_a)
    login(page, live_server.url, "fiona", "pw-fiona")
    page.goto(f"{live_server.url}/analytics/cost-per-issue/?sort=cost&dir=desc")
    before = CostHistory.amount(org=org_a)
    expect(total_card(page)).to_have_text(money(before))
    expect(cost_cell(page, "ENG-3")).to_have_text(money(CostHistory.amount(issue__key="ENG-3")))
    mark_page(page)

    # Someone starts typing a custom range, and has not applied it yet.
    page.get_by_label("Date range (UTC)").select_option(label="Custom dates")
    start = page.get_by_label("From (UTC)")
    start.fill("")
    start.press_sequentially("2025-0")
    shot(page, "live-cost-1-typing")

    # A sandbox of ENG-3 ran for three hours yesterday: its interval closes, the row lands.
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    eng3 = history.sessions["eng3"].issue
    session = make_session(org_a, issue=eng3, pool=history.main, vcpu=8, memory_mb=16384)
    run(
        session,
        datetime.combine(yesterday, time(12), tzinfo=UTC),
        datetime.combine(yesterday, time(15), tzinfo=UTC),
    )
    after = CostHistory.amount(org=org_a)
    assert after > before

    expect(total_card(page)).to_have_text(money(after), timeout=POLL_WAIT)
    expect(cost_cell(page, "ENG-3")).to_have_text(
        money(CostHistory.amount(issue__key="ENG-3")), timeout=POLL_WAIT
    )
    # One more poll after the figures changed: the typed date is untouched, focus still on it.
    with page.expect_response(FIGURES_POLL):
        pass
    expect(start).to_have_value("2025-0")
    expect(start).to_be_focused()
    expect(page.get_by_label("Date range (UTC)")).to_have_value("custom")
    assert same_page(page)
    shot(page, "live-cost-2-updated")
