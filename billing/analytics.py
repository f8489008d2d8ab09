"""Cost per Issue: one function computes what the page, its CSV and the tests all show.

Every figure is aggregated in the database with GROUP BY (four queries whatever the number
of issues); Python only merges the grouped rows by issue and sorts them.

Definitions (also written on the page):

- **Cost**, **running seconds**, **vCPU-seconds**: sums of the ledger rows whose usage day is
  in the period (read from the daily rollup, which the database keeps equal to the ledger).
  Reversals are included, so the figures are net.
- **Sessions**: sessions whose sandbox was alive (started, not yet ended) at some time in the
  period.
- **Paused seconds**: for those sessions, the time in the period between the sandbox starting
  and ending (or now), minus the running seconds and minus the current running stretch of
  sessions running right now. It includes short pausing/resuming transitions; it is never
  billed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, DateTimeField, DurationField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from billing.ledger import exact_seconds
from billing.models import (
    AMOUNT_QUANTUM,
    SECONDS_QUANTUM,
    CostEvent,
    CostEventQuerySet,
    DailyCost,
)
from billing.periods import Period
from sessions.models import RunningInterval, Session

ZERO = Decimal(0)
UNATTRIBUTED = "Unattributed"


@dataclass(frozen=True)
class CostFilter:
    org_id: int
    period: Period
    pool_id: int | None = None
    provider: str | None = None


@dataclass
class IssueCost:
    issue_id: int | None
    key: str
    title: str
    sessions: int = 0
    running_seconds: Decimal = ZERO
    vcpu_seconds: Decimal = ZERO
    amount: Decimal = ZERO
    alive_seconds: Decimal = ZERO
    open_seconds: Decimal = ZERO
    # Set on the totals row: the sum of the rows' paused seconds (each clamped at zero).
    paused_total: Decimal | None = None

    @property
    def paused_seconds(self) -> Decimal:
        if self.paused_total is not None:
            return self.paused_total
        return max(ZERO, self.alive_seconds - self.running_seconds - self.open_seconds)

    @property
    def is_unattributed(self) -> bool:
        return self.issue_id is None

    def add(self, other: IssueCost) -> None:
        self.sessions += other.sessions
        self.running_seconds += other.running_seconds
        self.vcpu_seconds += other.vcpu_seconds
        self.amount += other.amount
        self.alive_seconds += other.alive_seconds
        self.open_seconds += other.open_seconds


def natural_key(text: str) -> list[Any]:
    """ENG-2 before ENG-10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


SORTS: dict[str, tuple[str, Any]] = {
    "issue": ("Issue", lambda r: natural_key(r.key)),
    "sessions": ("Sessions", lambda r: r.sessions),
    "running": ("Running hours", lambda r: r.running_seconds),
    "paused": ("Paused hours", lambda r: r.paused_seconds),
    "vcpu": ("vCPU-hours", lambda r: r.vcpu_seconds),
    "cost": ("Cost", lambda r: r.amount),
}
DEFAULT_SORT = "cost"


@dataclass
class CostReport:
    filter: CostFilter
    rows: list[IssueCost]
    unattributed: IssueCost | None
    totals: IssueCost
    daily: list[tuple[date, Decimal]]
    currency: str = "USD"
    now: datetime = field(default_factory=timezone.now)

    @property
    def top(self) -> list[IssueCost]:
        """The ten most expensive issues (for the chart), whatever the table's sort."""
        return sorted(self.rows, key=lambda r: (-r.amount, natural_key(r.key)))[:10]


def provider_q(provider: str, prefix: str = "") -> Q:
    """Sessions billed under ``provider`` (the session's own, else its pool's; see emit)."""
    q = Q(**{f"{prefix}provider": provider}) | Q(
        **{f"{prefix}provider": "", f"{prefix}pool__provider": provider}
    )
    if provider == "e2b":
        q |= Q(**{f"{prefix}provider": "", f"{prefix}pool__isnull": True})
    return q


def ledger_rows(f: CostFilter) -> CostEventQuerySet:
    """The ledger rows a filter covers: what the report's figures must add up to."""
    qs = CostEvent.objects.filter(org_id=f.org_id).in_period(f.period.start, f.period.end)
    if f.pool_id is not None:
        qs = qs.filter(pool_id=f.pool_id)
    if f.provider:
        qs = qs.filter(provider=f.provider)
    return qs


def rollup_rows(f: CostFilter) -> QuerySet[DailyCost]:
    qs = DailyCost.objects.filter(
        org_id=f.org_id, day__gte=f.period.first_day, day__lte=f.period.last_day
    )
    if f.pool_id is not None:
        qs = qs.filter(pool_id=f.pool_id)
    if f.provider:
        qs = qs.filter(provider=f.provider)
    return qs


def _sessions(f: CostFilter, prefix: str = "") -> Q:
    q = Q(**{f"{prefix}org_id": f.org_id})
    if f.pool_id is not None:
        q &= Q(**{f"{prefix}pool_id": f.pool_id})
    if f.provider:
        q &= provider_q(f.provider, prefix)
    return q


def _amount(value: Decimal | None) -> Decimal:
    # Quantised so every backend answers the same digits (SQLite sums through floats).
    return value.quantize(AMOUNT_QUANTUM) if value is not None else ZERO


def _qty(value: Decimal | None) -> Decimal:
    return value.quantize(SECONDS_QUANTUM) if value is not None else ZERO


def _seconds(value: timedelta | None) -> Decimal:
    return exact_seconds(value) if value is not None else ZERO


def _dt(value: datetime) -> Value:
    return Value(value, output_field=DateTimeField())


def cost_per_issue(
    f: CostFilter, *, sort: str = DEFAULT_SORT, descending: bool = True, now: datetime | None = None
) -> CostReport:
    now = now or timezone.now()
    start, end = f.period.start, f.period.end
    by_issue: dict[int | None, IssueCost] = {}

    def row(issue_id: int | None, key: str | None, title: str | None) -> IssueCost:
        if issue_id not in by_issue:
            by_issue[issue_id] = (
                IssueCost(issue_id, key or "", title or "")
                if issue_id is not None
                else IssueCost(None, "", UNATTRIBUTED)
            )
        return by_issue[issue_id]

    # 1. Billed figures per issue, from the rollup.
    billed = (
        rollup_rows(f)
        .values("issue_id", "issue__key", "issue__title")
        .annotate(amount=Sum("amount"), seconds=Sum("quantity_seconds"), vcpu=Sum("vcpu_seconds"))
        .order_by()
    )
    for b in billed:
        r = row(b["issue_id"], b["issue__key"], b["issue__title"])
        r.amount += _amount(b["amount"])
        r.running_seconds += _qty(b["seconds"])
        r.vcpu_seconds += _qty(b["vcpu"])

    # 2. Sessions alive in the period and how long, per issue.
    alive_span = Least(Coalesce("ended_at", _dt(now)), _dt(end)) - Greatest(
        "started_at", _dt(start)
    )
    alive = (
        Session.objects.filter(_sessions(f), started_at__isnull=False, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .values("issue_id", "issue__key", "issue__title")
        .annotate(n=Count("id"), alive=Sum(alive_span, output_field=DurationField()))
        .order_by()
    )
    for a in alive:
        r = row(a["issue_id"], a["issue__key"], a["issue__title"])
        r.sessions += a["n"]
        r.alive_seconds += _seconds(a["alive"])

    # 3. Running stretches not billed yet (open intervals), per issue.
    upto = min(now, end)
    if upto > start:
        open_span = _dt(upto) - Greatest("started_at", _dt(start))
        running = (
            RunningInterval.objects.filter(
                _sessions(f, "session__"), ended_at__isnull=True, started_at__lt=upto
            )
            .values("session__issue_id", "session__issue__key", "session__issue__title")
            .annotate(open=Sum(open_span, output_field=DurationField()))
            .order_by()
        )
        for o in running:
            r = row(o["session__issue_id"], o["session__issue__key"], o["session__issue__title"])
            r.open_seconds += _seconds(o["open"])

    # 4. Cost per day, for the chart.
    per_day = {
        d["day"]: _amount(d["amount"])
        for d in rollup_rows(f).values("day").annotate(amount=Sum("amount")).order_by()
    }
    daily = [(day, per_day.get(day, ZERO)) for day in f.period.days]

    unattributed = by_issue.pop(None, None)
    rows = list(by_issue.values())
    sort_key = SORTS.get(sort, SORTS[DEFAULT_SORT])[1]
    # Ties (and the secondary order) by issue key, ascending, whatever the direction.
    rows.sort(key=lambda r: natural_key(r.key))
    rows.sort(key=sort_key, reverse=descending)

    totals = IssueCost(None, "", "Total", paused_total=ZERO)
    for r in [*rows, unattributed] if unattributed is not None else rows:
        totals.add(r)
        totals.paused_total = (totals.paused_total or ZERO) + r.paused_seconds
    return CostReport(f, rows, unattributed, totals, daily, now=now)
