"""The sessions list at 1366 px: one line per row with long titles, the State filter by
keyboard, and select-all ticking only what can be terminated."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sessions.intervals import close_open_interval, open_interval
from sessions.models import Issue, SessionState
from tests.browser.conftest import axe_violations, describe, login, shot
from tests.factories import CapacityPoolFactory
from tests.sessions_web.conftest import make_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_TITLE = "Make the nightly exporter cope with " + "really " * 25 + "long issue titles"
STATES = [
    SessionState.RUNNING,
    SessionState.PAUSED,
    SessionState.QUEUED,
    SessionState.TERMINATED,
    SessionState.FAILED,
]


@pytest.fixture
def long_rows(org_a):  # type: ignore[no-untyped-def]
    from tests.sessions_engine.conftest import ensure_rate_cards

    ensure_rate_cards()
    pool = CapacityPoolFactory.create(
        org=org_a, name="e2b-" + "very-long-pool-name-" * 4 + "west", provider="e2b"
    )
    now = timezone.now()
    made = []
    for i in range(30):
        state = STATES[i % len(STATES)]
        s = make_session(
            org_a,
            state,
            issue=f"ENG-{1000 + i}",
            pool=pool,
            started_at=now - timedelta(hours=3) if state != SessionState.QUEUED else None,
            sandbox_id=f"sbx-{i:04d}-" + "x" * 40 if state != SessionState.QUEUED else "",
        )
        Issue.objects.filter(org=org_a, key=f"ENG-{1000 + i}").update(title=LONG_TITLE)
        if state != SessionState.QUEUED:
            open_interval(s, at=now - timedelta(hours=3))
            if state != SessionState.RUNNING:
                close_open_interval(s, at=now - timedelta(hours=2), reason="pause")
        made.append(s)
    return made


def test_rows_stay_one_line_at_1366_px(live_server, page, alice, long_rows):  # type: ignore[no-untyped-def]
    login(page, live_server.url, "alice", "pw-alice")
    page.goto(f"{live_server.url}/sessions/")
    rows = page.locator("#session-table tbody tr")
    expect(rows).to_have_count(25)
    heights = rows.evaluate_all("rs => rs.map(r => r.getBoundingClientRect().height)")
    line = page.evaluate(
        "() => parseFloat(getComputedStyle(document.querySelector('#session-table td')).lineHeight)"
    )
    assert line > 10
    # One line of text plus the cell padding in every row: a wrapped cell would add a whole
    # line (rows differ by a fraction of a pixel where a cell holds <code> or a badge).
    assert max(heights) < 2 * line, (heights, line)
    assert max(heights) - min(heights) < line / 2, heights
    # No sideways scroll either: the table fits the card.
    assert page.evaluate(
        "() => { const c = document.querySelector('.table-card');"
        " return c.scrollWidth <= c.clientWidth; }"
    )
    assert page.evaluate("() => document.documentElement.scrollHeight") < 1800
    # The whole title is one hover away.
    cell = page.locator("#session-table tbody td.cell-issue div").first
    assert cell.get_attribute("title") == f"ENG-{1029}: {LONG_TITLE}"
    assert axe_violations(page) == [], describe(axe_violations(page))
    shot(page, "sessions-list-1366")


def test_state_filter_by_keyboard_and_select_all(live_server, page, alice, long_rows):  # type: ignore[no-untyped-def]
    login(page, live_server.url, "alice", "pw-alice")
    page.goto(f"{live_server.url}/sessions/")
    summary = page.locator("#f-state summary")
    summary.focus()
    page.keyboard.press("Enter")
    live = page.get_by_role("checkbox", name="Live (not ended)")
    expect(live).to_be_visible()
    page.keyboard.press("Tab")
    expect(live).to_be_focused()
    page.keyboard.press("Space")
    expect(live).to_be_checked()
    expect(page.locator("#f-state-summary")).to_have_text("Live (not ended)")  # before Filter
    shot(page, "sessions-list-state-filter", full_page=False)
    page.keyboard.press("Escape")
    expect(live).to_be_hidden()
    expect(summary).to_be_focused()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/sessions/?state=live*")
    expect(page.locator("#f-state-summary")).to_have_text("Live (not ended)")
    badges = page.locator("#session-table tbody .badge")
    assert set(badges.all_inner_texts()) == {"Running", "Paused", "Queued"}

    page.goto(f"{live_server.url}/sessions/")
    page.get_by_label("Select every session on this page that can be terminated").check()
    boxes = page.locator("#session-table tbody input[name=ids]")
    terminable = [
        r
        for r in page.locator("#session-table tbody tr").all()
        if r.locator(".badge").inner_text() in ("Running", "Paused", "Queued")
    ]
    assert boxes.count() == len(terminable) == 15
    assert all(b.is_checked() for b in boxes.all())
    shot(page, "sessions-list-select-all", full_page=False)
