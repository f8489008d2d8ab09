"""The cost panels other pages embed: dashboard summary and a session's ledger."""

from __future__ import annotations

from decimal import Decimal

import time_machine
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from billing.dashboard import cost_summary, session_cost
from billing.ledger import reverse_cost_event
from sessions.intervals import open_interval
from tests.billing.helpers import at, expected_amount, ledger_sum, make_issue, make_session, run

NOW = at("2025-03-10 12:00")


def test_cost_summary_today_month_and_top_five(org_a, org_b):
    issues = [make_issue(org_a, f"ENG-{i}", f"Issue {i}") for i in range(1, 8)]
    for i, issue in enumerate(issues, start=1):
        session = make_session(org_a, issue=issue)
        run(
            session,
            at("2025-03-02 10:00"),
            at("2025-03-02 10:00") + i * (at("2025-03-02 11:00") - at("2025-03-02 10:00")),
        )
    today = run(make_session(org_a), at("2025-03-10 08:00"), at("2025-03-10 09:00"))
    run(make_session(org_a), at("2025-02-27 08:00"), at("2025-02-27 09:00"))  # last month
    run(
        make_session(org_b, issue=make_issue(org_b, "OPS-1")),
        at("2025-03-10 01:00"),
        at("2025-03-10 09:00"),
    )

    with CaptureQueriesContext(connection) as ctx:
        summary = cost_summary(org_a, now=NOW)
    assert len(ctx.captured_queries) == 2
    assert summary["today"] == today.amount
    assert summary["month"] == ledger_sum(org=org_a, occurred_at__gt=at("2025-03-01 00:00"))
    assert [t["key"] for t in summary["top_issues"]] == [
        "ENG-7",
        "ENG-6",
        "ENG-5",
        "ENG-4",
        "ENG-3",
    ]

    html = render_to_string(
        "billing/_dashboard_cost.html", {"cost": summary, "nav_can": {"billing": True}}
    )
    assert "Today, 2025-03-10" in html and f"${today.amount.quantize(Decimal('0.01'))}" in html
    assert 'href="/analytics/issues/ENG-7/"' in html and "OPS-1" not in html
    assert (
        render_to_string("billing/_dashboard_cost.html", {"cost": summary, "nav_can": {}}).strip()
        == ""
    )


def test_top_five_ties_go_by_key(org_a):
    """Equal costs: the five first keys make the list, whatever order the rows came in."""
    for key in ["ENG-6", "ENG-3", "ENG-10", "ENG-1", "ENG-2", "ENG-4", "ENG-5"]:
        run(
            make_session(org_a, issue=make_issue(org_a, key)),
            at("2025-03-02 10:00"),
            at("2025-03-02 11:00"),
        )
    top = cost_summary(org_a, now=NOW)["top_issues"]
    assert [t["key"] for t in top] == ["ENG-1", "ENG-10", "ENG-2", "ENG-3", "ENG-4"]
    assert len({t["amount"] for t in top}) == 1


def test_session_cost_with_live_estimate(org_a):
    session = make_session(org_a, vcpu=2, memory_mb=512)
    first = run(session, at("2025-03-10 08:00"), at("2025-03-10 09:00"))
    second = run(session, at("2025-03-10 09:30"), at("2025-03-10 10:00"))
    reverse_cost_event(second, reason="test credit", actor=None)
    open_interval(session, at=at("2025-03-10 11:00"))

    with CaptureQueriesContext(connection) as ctx:
        cost = session_cost(session, now=NOW)
    assert len(ctx.captured_queries) <= 4
    assert cost["total"] == first.amount
    assert cost["running"] and cost["open_seconds"] == Decimal(3600)
    assert cost["estimate"] == first.amount + expected_amount(3600, 2, 512)
    assert len(cost["rows"]) == 3

    html = render_to_string(
        "billing/_session_ledger.html", {"cost": cost, "nav_can": {"billing": True}}
    )
    assert "estimate" in html and "Reversal of #" in html and "test credit" in html
    assert f"≈ ${cost['estimate'].quantize(Decimal('0.01'))}" in html


def test_session_cost_queries_do_not_grow(org_a):
    session = make_session(org_a)
    for day in range(1, 4):
        run(session, at(f"2025-03-0{day} 08:00"), at(f"2025-03-0{day} 09:00"))
    with CaptureQueriesContext(connection) as small:
        session_cost(session, now=NOW)
    for hour in range(10, 23):
        run(session, at(f"2025-03-05 {hour}:00"), at(f"2025-03-05 {hour}:30"))
    with CaptureQueriesContext(connection) as large:
        cost = session_cost(session, now=NOW)
    assert len(small.captured_queries) == len(large.captured_queries)
    assert not cost["running"] and cost["estimate"] is None and cost["count"] == 16


def test_sessions_without_rows(org_a):
    with time_machine.travel(NOW, tick=False):
        session = make_session(org_a)
        cost = session_cost(session)
    html = render_to_string(
        "billing/_session_ledger.html", {"cost": cost, "nav_can": {"billing": True}}
    )
    assert "No ledger rows yet" in html and "$0.00" in html
