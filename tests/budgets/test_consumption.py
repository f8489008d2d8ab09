"""Property test: every budget's consumption is the ledger plus the open intervals, exactly.

Random steps drive real sessions through their life (a sandbox starts running, pauses,
resumes, stops; the clock moves, across UTC midnights and month ends), through
``sessions.intervals`` (the ledger rows are written by billing's receiver, as in
production). At every step each budget's figure (org and pool: this month; an issue's own
budget and the default's per-issue figures: the issue's whole life) equals, in Decimal and
to the last of the ledger's 12 places:

    Σ ledger rows in scope and period  +  Σ open intervals in scope × their rate until now

where the open part is written out from the published formula, not from the code under test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.ledger import exact_seconds
from billing.models import CostEvent
from billing.periods import midnight
from budgets.consumption import month_bounds
from budgets.figures import org_figures
from budgets.models import Scope
from sessions.intervals import close_open_interval, open_interval
from sessions.models import RunningInterval
from tests.billing.helpers import expected_amount, make_issue, make_pool, make_session
from tests.budgets.helpers import budget
from tests.factories import OrganizationFactory, RateCardFactory

T0 = datetime(2026, 3, 30, 22, 0, tzinfo=UTC)  # two hours before a month ends
_orgs = itertools.count()

steps = st.lists(
    st.tuples(
        st.sampled_from(["start", "stop", "wait"]),
        st.integers(min_value=0, max_value=3),  # which session
        st.integers(min_value=1, max_value=5 * 3600),  # seconds the clock moves
    ),
    min_size=1,
    max_size=14,
)


def ledger(**filters: object) -> Decimal:
    total = CostEvent.objects.filter(**filters).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    return total.quantize(Decimal("1e-12"))


def open_part(now: datetime, **filters: object) -> Decimal:
    total = Decimal(0)
    for interval in RunningInterval.objects.filter(ended_at__isnull=True, **filters).select_related(
        "session"
    ):
        s = interval.session
        seconds = exact_seconds(now - interval.started_at)
        total += expected_amount(seconds, s.vcpu or 0, s.memory_mb or 0)
    return total


def check(org_id: int, now: datetime) -> None:
    first, _, _ = month_bounds(now)
    start = midnight(first)
    end = midnight((first + timedelta(days=32)).replace(day=1))
    month = {"org_id": org_id, "occurred_at__gt": start, "occurred_at__lte": end}
    figures = org_figures(org_id, now)
    assert figures
    for f in figures:
        if f.budget.scope == Scope.ORG:
            expected = ledger(**month) + open_part(now, session__org_id=org_id)
        elif f.budget.scope == Scope.POOL:
            expected = ledger(pool_id=f.budget.pool_id, **month) + open_part(
                now, session__pool_id=f.budget.pool_id
            )
        else:
            expected = ledger(issue_id=f.issue_id) + open_part(now, session__issue_id=f.issue_id)
        assert f.consumed == expected, (f.label, f.period, f.consumed, expected)


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=steps,
    sizes=st.lists(st.sampled_from([(1, 512), (2, 1024), (8, 4096)]), min_size=4, max_size=4),
)
def test_consumption_is_ledger_plus_open_intervals(
    steps: list[tuple[str, int, int]], sizes: list[tuple[int, int]]
) -> None:
    RateCardFactory.create(provider="e2b")
    n = next(_orgs)
    org = OrganizationFactory.create(slug=f"prop-{n}", name=f"Prop {n}")
    pools = [make_pool(org, "p1"), make_pool(org, "p2")]
    issues = [make_issue(org, "ENG-1"), make_issue(org, "ENG-2")]
    budget(org, "100.00")
    budget(org, "50.00", Scope.POOL, pool=pools[0])
    budget(org, "10.00", Scope.ISSUE)  # the default per-issue budget
    budget(org, "20.00", Scope.ISSUE, issue=issues[1])
    with time_machine.travel(T0, tick=False) as clock:
        sessions = [
            make_session(
                org,
                pool=pools[i % 2],
                issue=issues[i % 2] if i < 3 else None,
                vcpu=sizes[i][0],
                memory_mb=sizes[i][1],
            )
            for i in range(4)
        ]
        for action, which, seconds in steps:
            session = sessions[which]
            now = timezone.now()
            if action == "start":
                open_interval(session, at=now)
            elif action == "stop":
                close_open_interval(session, at=now, reason="pause")
            clock.shift(timedelta(seconds=seconds))
            # A moment between steps: some intervals open, the clock anywhere.
            check(org.pk, timezone.now())
