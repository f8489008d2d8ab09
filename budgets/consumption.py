"""What each budget has consumed, and where spend is heading, for one org in four queries.

consumption = the ledger rows of the budget's scope and period (net of reversals) + every
open running interval in the scope priced as if it closed now.

The ledger part reads the daily rollup (``DailyCost``, which a database trigger keeps equal to
the ledger, row for row); the open part goes through the ledger's own pieces
(``billing_provider``, the card in effect when the interval started, ``exact_seconds``,
``price``), as ``billing.live_cost`` does, so a budget's figure is what the ledger will say
when the intervals close, to the last decimal place. An open interval counts in the month it
will be billed in: the current one (the daily accrual closes every interval at midnight).

Forecasts (org and pool, month end):

    spend so far + committed running cost + trailing 7-day run rate × days left

where committed running cost is each running sandbox's rate × the time left before its E2B
timeout ends (capped at month end) and the run rate is the last 7 whole UTC days' ledger /
7. An issue's projection is its spend so far + its running sandboxes' rate × the time left
before their timeout: what the issue will have cost if nothing pauses them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from billing.ledger import exact_seconds, price, price_per_second
from billing.models import AMOUNT_QUANTUM, DailyCost, RateCard
from billing.periods import midnight
from pools.config import DEFAULT_TIMEOUT
from pools.models import CapacityPool
from sessions.models import RunningInterval

ZERO = Decimal(0).quantize(AMOUNT_QUANTUM)
CENT = Decimal("0.01")
RUN_RATE_DAYS = 7


def month_period(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y-%m}"


def issue_period(issue_id: int) -> str:
    return f"issue-{issue_id}"


def month_bounds(now: datetime) -> tuple[date, date, datetime]:
    """First day, last day and the end (next month's first midnight) of ``now``'s UTC month."""
    first = now.astimezone(UTC).date().replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt - timedelta(days=1), midnight(nxt)


@dataclass
class OpenRun:
    """An open running interval: what it has cost so far and what it costs per second."""

    session_id: int
    pool_id: int | None
    issue_id: int | None
    cost: Decimal
    rate: Decimal  # USD per second
    seconds_left: Decimal  # before the sandbox's timeout ends
    running: bool


@dataclass
class OrgSpend:
    now: datetime
    month_billed: dict[int | None, Decimal] = field(default_factory=dict)  # pool id → ledger
    week_billed: dict[int | None, Decimal] = field(default_factory=dict)  # last 7 whole days
    issue_billed: dict[int, Decimal] = field(default_factory=dict)  # issue id → all time
    runs: list[OpenRun] = field(default_factory=list)
    _index: tuple[dict[int | None, list[OpenRun]], dict[int | None, list[OpenRun]]] | None = field(
        default=None, repr=False
    )
    _indexed: int = field(default=-1, repr=False)

    @property
    def month_end(self) -> datetime:
        return month_bounds(self.now)[2]

    def _runs(self, pool_id: int | None = None, issue_id: int | None = None) -> list[OpenRun]:
        """The open runs of one pool or one issue (all of them with neither), from an index
        built once, so a pass over thousands of issues stays linear."""
        if pool_id is None and issue_id is None:
            return self.runs
        if self._index is None or self._indexed != len(self.runs):
            by_pool: dict[int | None, list[OpenRun]] = defaultdict(list)
            by_issue: dict[int | None, list[OpenRun]] = defaultdict(list)
            for run in self.runs:
                by_pool[run.pool_id].append(run)
                by_issue[run.issue_id].append(run)
            self._index, self._indexed = (by_pool, by_issue), len(self.runs)
        if issue_id is None:
            return self._index[0].get(pool_id, [])
        runs = self._index[1].get(issue_id, [])
        return runs if pool_id is None else [r for r in runs if r.pool_id == pool_id]

    def month(self, pool_id: int | None = None) -> Decimal:
        """The org's (or one pool's) spend this month: ledger + open intervals."""
        billed = (
            sum(self.month_billed.values(), ZERO)
            if pool_id is None
            else self.month_billed.get(pool_id, ZERO)
        )
        return billed + sum((r.cost for r in self._runs(pool_id=pool_id)), ZERO)

    def issue(self, issue_id: int) -> Decimal:
        billed = self.issue_billed.get(issue_id, ZERO)
        return billed + sum((r.cost for r in self._runs(issue_id=issue_id)), ZERO)

    def committed(self, runs: Iterable[OpenRun], until: datetime | None = None) -> Decimal:
        left_to_until = (
            exact_seconds(max(until - self.now, timedelta(0))) if until is not None else None
        )
        total = ZERO
        for run in runs:
            if not run.running:
                continue
            seconds = run.seconds_left
            if left_to_until is not None:
                seconds = min(seconds, left_to_until)
            total += (seconds * run.rate).quantize(AMOUNT_QUANTUM)
        return total

    def forecast(self, pool_id: int | None = None) -> Decimal:
        """Month-end forecast: spend so far + committed running cost + 7-day run rate."""
        week = (
            sum(self.week_billed.values(), ZERO)
            if pool_id is None
            else self.week_billed.get(pool_id, ZERO)
        )
        days_left = Decimal(max((self.month_end - self.now).total_seconds(), 0) / 86400).quantize(
            Decimal("0.000001")
        )
        rate = week / RUN_RATE_DAYS
        committed = self.committed(self._runs(pool_id=pool_id), until=self.month_end)
        return (self.month(pool_id) + committed + rate * days_left).quantize(AMOUNT_QUANTUM)

    def projection(self, issue_id: int) -> Decimal:
        """The issue's spend if its running sandboxes run until their timeout."""
        return self.issue(issue_id) + self.committed(self._runs(issue_id=issue_id))


def org_spend(org_id: int, now: datetime, issue_ids: Iterable[int] = ()) -> OrgSpend:
    """Everything the org's budgets need, in at most four queries: the month's and the last
    week's rollup per pool (one), the named issues' and live issues' ledger (one), the open
    intervals (one) and the rate cards they need (one)."""
    spend = OrgSpend(now=now)
    first, last, _ = month_bounds(now)
    today = now.astimezone(UTC).date()
    week_start = today - timedelta(days=RUN_RATE_DAYS)
    rows = (
        DailyCost.objects.filter(org_id=org_id, day__gte=min(first, week_start), day__lte=last)
        .order_by()
        .values("pool_id")
        .annotate(
            month=Sum("amount", filter=Q(day__gte=first)),
            week=Sum("amount", filter=Q(day__gte=week_start, day__lt=today)),
        )
    )
    for row in rows:
        # SQLite sums decimals through floats: quantise like CostEventQuerySet.totals does.
        spend.month_billed[row["pool_id"]] = (row["month"] or ZERO).quantize(AMOUNT_QUANTUM)
        spend.week_billed[row["pool_id"]] = (row["week"] or ZERO).quantize(AMOUNT_QUANTUM)

    # Plain rows, not model instances: a pass reads every open interval of the org.
    intervals = list(
        RunningInterval.objects.filter(session__org_id=org_id, ended_at__isnull=True).values_list(
            "started_at",
            "session_id",
            "session__state",
            "session__pool_id",
            "session__issue_id",
            "session__provider",
            "session__vcpu",
            "session__memory_mb",
        )
    )
    wanted = set(issue_ids) | {row[4] for row in intervals if row[4]}
    if wanted:
        issue_rows = (
            DailyCost.objects.filter(org_id=org_id, issue_id__in=wanted)
            .order_by()
            .values("issue_id")
            .annotate(total=Sum("amount"))
            .values_list("issue_id", "total")
        )
        spend.issue_billed = {
            pk: (total or ZERO).quantize(AMOUNT_QUANTUM) for pk, total in issue_rows
        }
    if intervals:
        spend.runs = _price_open(org_id, intervals, now)
    return spend


def _price_open(org_id: int, intervals: list[tuple[Any, ...]], now: datetime) -> list[OpenRun]:
    """Price each open interval as the ledger would if it closed now (two queries: the org's
    pools, for their provider and timeout, and the rate cards)."""
    pools = {
        pk: (provider, config if isinstance(config, dict) else {})
        for pk, provider, config in CapacityPool.objects.filter(org_id=org_id).values_list(
            "pk", "provider", "config"
        )
    }

    def provider_of(row: tuple[Any, ...]) -> str:
        # billing.ledger.billing_provider on plain values: its own, else its pool's, else E2B.
        pool = pools.get(row[3])
        return str(row[5] or (pool[0] if pool else "") or "e2b")

    providers = {provider_of(row) for row in intervals}
    latest = max(row[0] for row in intervals)
    cards: dict[str, list[RateCard]] = defaultdict(list)
    for rate_card in RateCard.objects.filter(
        provider__in=providers, effective_from__lte=latest
    ).order_by("-effective_from"):
        cards[rate_card.provider].append(rate_card)
    rates: dict[tuple[int, int, int], Decimal] = {}
    runs = []
    for row in intervals:
        started_at, session_id, state, pool_id, issue_id, _, vcpu, memory = row
        card = next((c for c in cards[provider_of(row)] if c.effective_from <= started_at), None)
        if card is None:  # no card yet: the ledger could not bill it either
            continue
        vcpu, memory = vcpu or 0, memory or 0
        key = (vcpu, memory, card.pk)
        if key not in rates:
            rates[key] = price_per_second(vcpu, memory, card)
        elapsed = exact_seconds(max(now - started_at, timedelta(0)))
        config = pools.get(pool_id, ("", {}))[1]
        timeout = Decimal(int(config.get("timeoutSeconds") or DEFAULT_TIMEOUT))
        runs.append(
            OpenRun(
                session_id=session_id,
                pool_id=pool_id,
                issue_id=issue_id,
                cost=price(elapsed, vcpu, memory, card),
                rate=rates[key],
                seconds_left=max(timeout - elapsed, Decimal(0)),
                running=state == "running",
            )
        )
    return runs


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT)


def daily_billed(org_id: int, now: datetime) -> dict[int | None, dict[date, Decimal]]:
    """The month's ledger per pool and day (one query), for the panel's chart."""
    first, last, _ = month_bounds(now)
    series: dict[int | None, dict[date, Decimal]] = defaultdict(dict)
    rows = (
        DailyCost.objects.filter(org_id=org_id, day__gte=first, day__lte=last)
        .order_by()
        .values("pool_id", "day")
        .annotate(total=Sum("amount"))
    )
    for row in rows:
        series[row["pool_id"]][row["day"]] = (row["total"] or ZERO).quantize(AMOUNT_QUANTUM)
    return series


def cumulative(by_day: dict[date, Decimal], now: datetime, so_far: Decimal) -> list[list[str]]:
    """``[[day, cumulative spend]…]`` from the 1st to today; today's point is ``so_far``
    (the ledger and the open intervals)."""
    first, _, _ = month_bounds(now)
    today = now.astimezone(UTC).date()
    points, running = [], ZERO
    day = first
    while day < today:
        running += by_day.get(day, ZERO)
        points.append([day.isoformat(), str(cents(running))])
        day += timedelta(days=1)
    points.append([today.isoformat(), str(cents(so_far))])
    return points
