"""Cost per Issue's page ranks its rows in the database (``cost_per_issue_page``): every page,
for every sort and direction, holds the rows the full report (``cost_per_issue``) holds there,
in the same order (ties by issue id ascending), with the same figures, totals, Unattributed
row and top ten."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from billing.analytics import SORTS, CostFilter, IssueCost, cost_per_issue
from billing.periods import period_for
from billing.ranking import cost_per_issue_page
from sessions.intervals import open_interval
from tests.billing.helpers import at, finish, make_issue, make_pool, make_session, run

NOW = at("2025-03-10 12:00:00.000500")


def _figures(r: IssueCost | None) -> tuple[object, ...] | None:
    if r is None:
        return None
    return (r.issue_id, r.sessions, r.running_seconds, r.vcpu_seconds, r.amount, r.paused_seconds)


@pytest.fixture
def ledger(org_a, org_b):
    """Issues with ties on every figure, sessions with no cost, running and paused sandboxes,
    sub-millisecond spans, an issue outside the range and work without an issue."""
    with time_machine.travel(NOW, tick=False):
        pool = make_pool(org_a, "main")
        issues = [make_issue(org_a, f"ENG-{i}") for i in range(1, 15)]
        for i, issue in enumerate(issues):
            for j in range(i % 3 + 1):
                s = make_session(org_a, issue=issue, pool=pool, vcpu=1 + (i % 2))
                start = at("2025-03-08 10:00") + timedelta(hours=j, microseconds=500 * (i % 4))
                # Ties: issues 0-2, 3-5, … have the same running time per session.
                run(s, start, start + timedelta(minutes=10 * (i // 3 + 1)))
                if i % 4 == 0:  # paused since, still alive
                    continue
                if i % 4 == 1:  # running right now: an open stretch
                    open_interval(s, at=start + timedelta(hours=5, microseconds=1500))
                    continue
                finish(s, start + timedelta(hours=2, microseconds=250 * i))
        idle = make_issue(org_a, "ENG-99")  # alive in the range, never billed
        make_session(org_a, issue=idle, started_at=at("2025-03-09 08:00"))
        old = make_session(org_a, issue=make_issue(org_a, "ENG-100"), pool=pool)
        run(old, at("2025-01-10 10:00"), at("2025-01-10 11:00"))
        finish(old, at("2025-01-10 11:00"))
        loose = make_session(org_a, pool=pool)
        run(loose, at("2025-03-09 09:00"), at("2025-03-09 09:30"))
        other = make_session(org_b, issue=make_issue(org_b, "OPS-1"))
        run(other, at("2025-03-09 01:00"), at("2025-03-09 05:00"))
    return org_a


@pytest.mark.parametrize("sort", list(SORTS))
@pytest.mark.parametrize("descending", [True, False])
# Ten rows a page or more: the first page by cost, most first, is the top ten's own query.
@pytest.mark.parametrize("per_page", [4, 10])
def test_every_page_matches_the_full_report(ledger, sort, descending, per_page):
    f = CostFilter(ledger.pk, period_for("30d", NOW.date()))
    full = cost_per_issue(f, sort=sort, descending=descending, now=NOW)
    assert full.count == 15
    seen: list[IssueCost] = []
    for number in range(1, -(-full.count // per_page) + 1):
        page = cost_per_issue_page(
            f, sort=sort, descending=descending, page=number, per_page=per_page, now=NOW
        )
        assert page.count == full.count and page.page_number == number
        seen.extend(page.rows)
        assert _figures(page.unattributed) == _figures(full.unattributed)
        assert [_figures(r) for r in page.top] == [_figures(r) for r in full.top]
        t, ft = page.totals, full.totals
        assert (t.amount, t.running_seconds, t.vcpu_seconds, t.sessions, t.paused_seconds) == (
            ft.amount,
            ft.running_seconds,
            ft.vcpu_seconds,
            ft.sessions,
            ft.paused_seconds,
        )
    assert [_figures(r) for r in seen] == [_figures(r) for r in full.rows]


def test_page_numbers_read_as_paginator_get_page(ledger):
    f = CostFilter(ledger.pk, period_for("30d", NOW.date()))
    full = cost_per_issue(f, now=NOW)

    def ids(page: object) -> list[int | None]:
        report = cost_per_issue_page(f, page=page, per_page=4, now=NOW)
        return [report.page_number, *(r.issue_id for r in report.rows)]

    first = [1, *(r.issue_id for r in full.rows[:4])]
    last = [4, *(r.issue_id for r in full.rows[12:])]
    assert ids(None) == ids("xyz") == first
    assert ids(9) == ids(0) == ids(-1) == last
    # Past any BIGINT offset: the last page, not a database error.
    assert ids(10**30) == ids(str(2**63)) == last


def test_an_empty_range(ledger):
    day = at("2024-06-01 00:00").date()  # before any session
    f = CostFilter(ledger.pk, period_for("custom", NOW.date(), start=day, end=day))
    report = cost_per_issue_page(f, now=NOW)
    assert report.count == 0 and report.rows == [] and report.unattributed is None
    assert report.totals.amount == 0 and report.totals.paused_seconds == 0
