"""Cost per outcome on Cost per Issue: spend by the session's outcome (overall and per
pool), the retry tax, and possible runaway loops."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Sum

from billing.analytics import CostFilter, cost_per_issue, ledger_rows
from billing.models import CostEvent
from billing.outcome_costs import outcome_report
from billing.periods import Period
from pools.models import CapacityPool
from sessions.models import PolicyAction, PolicyKind, Session, SessionState
from tests.billing.helpers import at, make_issue, make_pool, make_session, run

S = SessionState
PERIOD = Period(date(2025, 3, 1), date(2025, 3, 31), "custom")
QUERY = {"range": "custom", "start": "2025-03-01", "end": "2025-03-31"}


def ended(session: Session, state: str, created: str) -> Session:
    Session.objects.filter(pk=session.pk).update(state=state, created_at=at(created))
    session.refresh_from_db()
    return session


@pytest.fixture
def spend(org_a):
    main, spare = make_pool(org_a, "main"), make_pool(org_a, "spare")
    eng1, eng2 = make_issue(org_a, "ENG-1"), make_issue(org_a, "ENG-2")
    out = {}

    def session(issue, pool, state, start, minutes, created):  # type: ignore[no-untyped-def]
        s = make_session(org_a, issue=issue, pool=pool)
        row = run(s, at(start), at(start) + timedelta(minutes=minutes))
        ended(s, state, created)
        return s, row.amount

    # ENG-1: failed, then lost, then a good end: both bad ones are retry tax.
    out["failed"] = session(eng1, main, S.FAILED, "2025-03-02 10:00", 10, "2025-03-02 10:00")
    out["lost"] = session(eng1, spare, S.LOST, "2025-03-02 11:00", 20, "2025-03-02 11:00")
    out["ok"] = session(eng1, main, S.TERMINATED, "2025-03-02 12:00", 30, "2025-03-02 12:00")
    # ENG-1 again: failed after the good end: not retry tax.
    out["late_fail"] = session(eng1, main, S.FAILED, "2025-03-03 10:00", 5, "2025-03-03 10:00")
    # ENG-2: failed and never succeeded: no retry tax (nothing was retried to success).
    out["eng2"] = session(eng2, main, S.FAILED, "2025-03-04 10:00", 7, "2025-03-04 10:00")
    # Terminated by a pool's policy: expired; and one still running.
    out["expired"] = session(None, main, S.TERMINATED, "2025-03-05 10:00", 3, "2025-03-05 10:00")
    PolicyAction.objects.create(
        session=out["expired"][0],
        kind=PolicyKind.MAX_AGE,
        action="terminate",
        reason="age",
        at=at("2025-03-05 10:03"),
    )
    out["live"] = session(None, spare, S.RUNNING, "2025-03-06 10:00", 4, "2025-03-06 10:00")
    return out


def test_spend_by_outcome_adds_up_to_the_report(org_a, spend):
    f = CostFilter(org_a.pk, PERIOD)
    report = outcome_report(f)
    amounts = {r.outcome: r.amount for r in report.by_outcome}
    assert amounts["failed"] == spend["failed"][1] + spend["late_fail"][1] + spend["eng2"][1]
    assert amounts["lost"] == spend["lost"][1]
    assert amounts["terminated"] == spend["ok"][1]
    assert amounts["expired"] == spend["expired"][1]
    assert amounts["running"] == spend["live"][1]
    assert report.total == cost_per_issue(f).totals.amount
    pools = {name: total for name, _, total in report.by_pool}
    assert sum(pools.values(), Decimal(0)) == report.total
    assert pools["spare"] == spend["lost"][1] + spend["live"][1]


def test_retry_tax(org_a, spend):
    report = outcome_report(CostFilter(org_a.pk, PERIOD))
    assert report.retry_tax == spend["failed"][1] + spend["lost"][1]
    assert [(r.issue_key, r.sessions) for r in report.retry_by_issue] == [("ENG-1", 2)]


def test_per_pool_filter(org_a, spend):
    spare = CapacityPool.objects.get(org=org_a, name="spare")
    report = outcome_report(CostFilter(org_a.pk, PERIOD, pool_id=spare.pk))
    assert {r.outcome for r in report.by_outcome} == {"lost", "running"}
    assert report.retry_tax == spend["lost"][1]  # the pool's share of ENG-1's retries


def test_runaway_loops_are_flagged_past_the_threshold(org_a, settings):
    settings.RENSEI_RUNAWAY_SANDBOXES_PER_HOUR = 6
    loop, busy = make_issue(org_a, "ENG-9"), make_issue(org_a, "ENG-10")
    for i in range(7):
        run(
            make_session(org_a, issue=loop),
            at(f"2025-03-07 10:{i:02d}"),
            at(f"2025-03-07 10:{i:02d}:30"),
        )
    for i in range(6):  # exactly N in the hour: not flagged
        run(
            make_session(org_a, issue=busy),
            at(f"2025-03-07 11:{i:02d}"),
            at(f"2025-03-07 11:{i:02d}:30"),
        )
    Session.objects.filter(org=org_a).update(started_at=None)
    for s in Session.objects.filter(org=org_a):
        first = s.intervals.order_by("started_at").first()
        assert first is not None
        Session.objects.filter(pk=s.pk).update(started_at=first.started_at)
    report = outcome_report(CostFilter(org_a.pk, PERIOD))
    assert [(r.issue_key, r.sandboxes) for r in report.runaways] == [("ENG-9", 7)]
    assert report.runaways[0].hour == at("2025-03-07 10:00")


def test_the_page_shows_it_and_keeps_walls(client_as, fiona, bob, charlie, spend):
    page = client_as(fiona).get("/analytics/cost-per-issue/", QUERY)
    assert page.status_code == 200
    # The page loads the section after it has rendered, for the same filters.
    assert 'hx-get="/analytics/cost-per-issue/outcomes/?' in page.content.decode()
    section = client_as(fiona).get("/analytics/cost-per-issue/outcomes/", QUERY)
    assert section.status_code == 200
    html = section.content.decode()
    assert 'data-outcome="failed"' in html and 'data-outcome="lost"' in html
    tax = re.search(r'data-retry-tax="([0-9.]+)"', html)
    assert tax and Decimal(tax.group(1)) == spend["failed"][1] + spend["lost"][1]
    assert "/analytics/issues/ENG-1/" in html
    assert client_as(bob).get("/analytics/cost-per-issue/", QUERY).status_code == 403
    assert client_as(bob).get("/analytics/cost-per-issue/outcomes/", QUERY).status_code == 403
    other = client_as(charlie).get("/analytics/cost-per-issue/outcomes/", QUERY).content.decode()
    assert 'data-outcome="failed"' not in other and "/analytics/issues/ENG-1/" not in other


def test_a_session_billed_in_two_pools_counts_once(org_a, spend):
    """Spend is grouped per session and pool in the database: a session whose rows are in two
    pools is one session of its outcome (and one retry), its cost split between the pools."""
    failed, first = spend["failed"]
    spare = CapacityPool.objects.get(org=org_a, name="spare")
    Session.objects.filter(pk=failed.pk).update(pool=spare)
    failed.refresh_from_db()
    second = run(failed, at("2025-03-02 10:20"), at("2025-03-02 10:25")).amount
    assert second > 0
    report = outcome_report(CostFilter(org_a.pk, PERIOD))
    row = next(r for r in report.by_outcome if r.outcome == "failed")
    assert row.sessions == 3 and row.amount == (
        first + second + spend["late_fail"][1] + spend["eng2"][1]
    )
    pools = {name: values for name, values, _ in report.by_pool}
    failed_at = report.outcomes.index("failed")
    assert pools["spare"][failed_at] == second
    assert [(r.issue_key, r.sessions) for r in report.retry_by_issue] == [("ENG-1", 2)]
    assert report.retry_tax == first + second + spend["lost"][1]


def test_a_periods_rows_are_summed_from_the_ledgers_time_index(org_a, spend):
    """Cost by outcome sums a period's rows by session from the (org, occurred_at, id) index.
    Leading with the org, it also serves the org's foreign key, whose own index is gone."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, CostEvent._meta.db_table)
    indexes = {name: c["columns"] for name, c in found.items() if c["index"]}
    # Its key columns (PostgreSQL lists the included ones after them).
    assert indexes["cost_org_occurred_cover_idx"][:3] == ["org_id", "occurred_at", "id"]
    assert ["org_id"] not in indexes.values()
    assert outcome_report(CostFilter(org_a.pk, PERIOD)).total == sum(a for _, a in spend.values())


def test_postgres_reads_a_periods_spend_by_session_from_the_index_alone(
    require_postgres, org_a, spend
):
    """On PostgreSQL the index carries the session, pool, provider and amount: the scan of a
    period's rows (billing/outcome_costs.py) never reads the ledger's table. Sequential scans
    are switched off so the planner shows its index path even on a handful of rows."""
    qs = (
        ledger_rows(CostFilter(org_a.pk, PERIOD, provider="e2b"))
        .values_list("session_id", "pool_id")
        .annotate(a=Sum("amount"))
        .order_by()
    )
    sql, params = qs.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, CostEvent._meta.db_table)
        assert found["cost_org_occurred_cover_idx"]["columns"] == [
            *("org_id", "occurred_at", "id"),
            *("session_id", "pool_id", "provider", "amount"),
        ]
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "Index Only Scan using cost_org_occurred_cover_idx" in plan, plan
