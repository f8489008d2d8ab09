"""``bench.seed_costs`` (the benchmarks' data loader) with tiny numbers: every row it
writes is one the product could have written, and the rollup and reports agree with it."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from bench.seed_costs import SeedError, describe, main, seed_costs
from billing.analytics import CostFilter, cost_per_issue
from billing.ledger import exact_seconds, interval_key, price, rate_card_for
from billing.models import CostEvent, DailyCost, usage_day
from billing.periods import Period
from pools.models import CapacityPool
from rensei.models import Organization
from sessions.models import Issue, RunningInterval, Session, SessionState

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def seed(org: str = "seeded", **numbers: Any) -> str:
    args = {"events": 150, "issues": 8, "sessions": 20, "days": 4} | numbers
    summary = seed_costs(org=org, force=True, **args)
    return describe(org, args["events"], args["sessions"], summary)


def check_ledger(org: Organization, days: int) -> None:
    """Each ledger row is its interval's cost event, priced and keyed as emit would."""
    now = timezone.now()
    sessions = {s.pk: s for s in Session.objects.filter(org=org)}
    intervals = {i.pk: i for i in RunningInterval.objects.filter(session__org=org)}
    events = list(CostEvent.objects.filter(org=org))
    assert len(events) == len(intervals)
    keys = {interval_key(i): i for i in intervals.values()}
    for event in events:
        interval = keys[event.idempotency_key]
        session = sessions[interval.session_id]
        assert interval.ended_at is not None
        assert (event.session_id, event.issue_id, event.pool_id) == (
            session.pk,
            session.issue_id,
            session.pool_id,
        )
        assert (event.vcpu, event.memory_mb) == (session.vcpu, session.memory_mb)
        assert (event.interval_start, event.interval_end, event.occurred_at) == (
            interval.started_at,
            interval.ended_at,
            interval.ended_at,
        )
        seconds = exact_seconds(interval.ended_at - interval.started_at)
        card = rate_card_for("e2b", interval.started_at)
        assert event.rate_card_id == card.pk
        assert event.quantity_seconds == seconds > 0
        assert event.amount == price(seconds, session.vcpu or 0, session.memory_mb or 0, card)
        # Split at UTC midnights like the daily accrual: one usage day per row.
        assert usage_day(interval.started_at + timedelta(microseconds=1)) == usage_day(
            interval.ended_at
        )
        assert now - timedelta(days=days) <= interval.started_at < interval.ended_at < now


def check_sessions(org: Organization) -> None:
    """Sessions are terminated, their intervals in order without overlap inside their life."""
    by_session = defaultdict(list)
    for interval in RunningInterval.objects.filter(session__org=org).order_by("started_at"):
        by_session[interval.session_id].append(interval)
    for session in Session.objects.filter(org=org):
        spans = by_session[session.pk]
        assert spans, session
        assert session.state == SessionState.TERMINATED
        assert session.started_at == spans[0].started_at
        assert session.ended_at == spans[-1].ended_at == session.state_changed_at
        assert session.created_at <= session.started_at
        assert spans[-1].closed_reason == "terminate"
        for before, after in pairwise(spans):
            assert before.ended_at is not None and before.ended_at <= after.started_at
            assert before.closed_reason in ("pause", "daily-accrual")


def check_rollup(org: Organization) -> None:
    """The daily rollup equals the ledger grouped by usage day, issue, pool and provider."""
    expected: dict[tuple[object, ...], list[Decimal]] = defaultdict(
        lambda: [Decimal(0), Decimal(0), Decimal(0)]
    )
    for e in CostEvent.objects.filter(org=org):
        row = expected[(usage_day(e.occurred_at), e.issue_id, e.pool_id, e.provider)]
        row[0] += e.amount
        row[1] += e.quantity_seconds
        row[2] += 1
    actual = {
        (d.day, d.issue_id, d.pool_id, d.provider): [d.amount, d.quantity_seconds, d.entries]
        for d in DailyCost.objects.filter(org=org)
    }
    assert actual == {k: [v[0], v[1], int(v[2])] for k, v in expected.items()}


def test_seeded_rows_are_ones_the_product_could_have_written() -> None:
    output = seed()
    org = Organization.objects.get(slug="seeded")
    assert "150 ledger rows" in output
    assert CostEvent.objects.filter(org=org).count() == 150
    assert Session.objects.filter(org=org).count() == 20
    assert Issue.objects.filter(org=org, key__startswith="SEED-").count() == 8
    # The seeded pools never take real work.
    assert not CapacityPool.objects.filter(org=org, enabled=True).exists()
    check_ledger(org, days=4)
    check_sessions(org)
    check_rollup(org)

    # The Cost per Issue report over the whole range adds up to the ledger, to the digit.
    today = timezone.now().date()
    report = cost_per_issue(CostFilter(org.pk, Period(today - 5 * DAY, today, "custom")))
    ledger_total = CostEvent.objects.filter(org=org).aggregate(t=Sum("amount"))["t"]
    assert report.totals.amount == ledger_total
    assert (
        sum(r.amount for r in report.rows)
        + (report.unattributed.amount if report.unattributed else 0)
        == report.totals.amount
    )


def test_a_second_run_adds_to_the_same_issues_and_stays_consistent() -> None:
    seed(events=40, sessions=10, seed=1)
    seed(events=60, sessions=15, seed=2)
    org = Organization.objects.get(slug="seeded")
    assert CostEvent.objects.filter(org=org).count() == 100
    assert Issue.objects.filter(org=org).count() == 8
    assert CostEvent.objects.values("idempotency_key").distinct().count() == 100
    check_ledger(org, days=4)
    check_rollup(org)


@pytest.mark.postgres
def test_postgres_with_and_without_row_triggers_agree(
    db_owner: None, require_postgres: None
) -> None:
    """The COPY path with triggers switched off fills the rollup as the trigger would. Only a
    superuser switches them off, so a bulk load is the owner's job."""
    # One window for both: the rate card in effect at each moment depends on where it falls.
    now = timezone.now()
    assert "triggers on" not in seed(org="bulk", seed=7, now=now)
    seed(org="triggered", seed=7, with_triggers=True, now=now)
    for slug in ("bulk", "triggered"):
        org = Organization.objects.get(slug=slug)
        check_ledger(org, days=4)
        check_rollup(org)
    totals = [
        DailyCost.objects.filter(org__slug=slug).aggregate(t=Sum("amount"))["t"]
        for slug in ("bulk", "triggered")
    ]
    assert totals[0] == totals[1] > 0


def test_bad_numbers_are_refused_before_anything_is_written() -> None:
    with pytest.raises(SeedError, match="at least one event per session"):
        seed(events=5, sessions=10)
    with pytest.raises(SeedError, match="DEBUG off"):
        seed_costs(events=1, sessions=1)
    assert not CostEvent.objects.exists()


def test_run_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """python -m bench.seed_costs: the same loader, a one-line summary, exit 2 on bad numbers."""
    argv = ["--events", "12", "--issues", "3", "--sessions", "4", "--days", "2", "--org", "cli"]
    assert main([*argv, "--force"]) == 0
    assert "Seeded org 'cli': 12 ledger rows, 4 sessions" in capsys.readouterr().out
    assert CostEvent.objects.filter(org__slug="cli").count() == 12
    assert main([*argv, "--events", "2"]) == 2
    assert "error: Refusing to seed synthetic costs with DEBUG off" in capsys.readouterr().err
