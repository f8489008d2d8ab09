"""Cost per Issue: one function computes what the page, its CSV and the tests all show.

Every figure is aggregated in the database with GROUP BY (five queries whatever the number
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

import decimal
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper
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
from sessions.models import Issue, RunningInterval, Session

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
    # Issues in the report (the Unattributed row aside): len(rows) for the full report; for
    # one page of it (``billing.ranking.cost_per_issue_page``), all the issues the pages hold.
    count: int = 0
    # One page of the report: its number, and the ten most expensive issues ranked with it.
    page_number: int = 1
    top_rows: list[IssueCost] | None = None

    @property
    def top(self) -> list[IssueCost]:
        """The ten most expensive issues (for the chart), whatever the table's sort."""
        if self.top_rows is not None:
            return self.top_rows
        return sorted(self.rows, key=lambda r: (-r.amount, r.issue_id or 0))[:10]

    def label(self, rows: Iterable[IssueCost], every: bool = False) -> None:
        """Fill in issue keys and titles: for ``rows`` (one query for just those), or with
        ``every`` for all of the org's issues (one query, no list of ids to send)."""
        wanted = {r.issue_id: r for r in rows if r.issue_id is not None and not r.key}
        if not wanted:
            return
        issues = Issue.objects.filter(org_id=self.filter.org_id)
        if not every:
            issues = issues.filter(pk__in=list(wanted))
        for pk, key, title in issues.values_list("pk", "key", "title"):
            r = wanted.get(pk)
            if r is not None:
                r.key, r.title = key, title


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


def rollup_totals(f: CostFilter, issue_id: int | None = None) -> dict[str, Any]:
    """What ``ledger_rows(f).totals()`` answers (rows, amount, seconds), from the rollup:
    a few hundred rollup rows instead of every ledger row in the range."""
    qs = rollup_rows(f)
    if issue_id is not None:
        qs = qs.filter(issue_id=issue_id)
    return _rollup_sums(qs)


def _rollup_sums(qs: QuerySet[DailyCost]) -> dict[str, Any]:
    t = qs.aggregate(n=Sum("entries"), amount=Sum("amount"), seconds=Sum("quantity_seconds"))
    return {
        "n": int(t["n"] or 0),
        "amount": _decimal(t["amount"], AMOUNT_QUANTUM),
        "seconds": _decimal(t["seconds"], SECONDS_QUANTUM),
    }


def issue_totals(org_id: int, issue_id: int) -> dict[str, Any]:
    """An issue's all-time ``totals()`` (rows, amount, seconds), from the rollup."""
    return _rollup_sums(DailyCost.objects.filter(org_id=org_id, issue_id=issue_id))


def _sessions(f: CostFilter, prefix: str = "") -> Q:
    q = Q(**{f"{prefix}org_id": f.org_id})
    if f.pool_id is not None:
        q &= Q(**{f"{prefix}pool_id": f.pool_id})
    if f.provider:
        q &= provider_q(f.provider, prefix)
    return q


# The grouped queries are built with the ORM and read as plain tuples: Django's per-value
# converters cost more than the merge itself on thousands of groups. These two functions are
# the converters, for what each backend's driver returns.
_FLOAT_TO_DECIMAL = decimal.Context(prec=15).create_decimal_from_float


def _decimal(value: Any, quantum: Decimal) -> Decimal:
    """A summed DECIMAL column: Decimal on PostgreSQL; int or float on SQLite (which sums
    through floats: 15 significant digits, like Django's own converter)."""
    if value is None:
        return ZERO.quantize(quantum)
    if isinstance(value, float):
        value = _FLOAT_TO_DECIMAL(value)
    elif not isinstance(value, Decimal):
        value = Decimal(value)
    return value.quantize(quantum)


def _duration(value: Any) -> Decimal:
    """A summed duration: timedelta on PostgreSQL, microseconds (int) on SQLite."""
    if value is None:
        return ZERO
    if isinstance(value, timedelta):
        return exact_seconds(value)
    return (Decimal(int(value)) / Decimal(1_000_000)).quantize(SECONDS_QUANTUM)


@contextmanager
def report_cursor() -> Iterator[CursorWrapper]:
    """A cursor for one of the reports' large grouped queries, in its own transaction. On
    PostgreSQL with one process and no JIT: a parallel plan gathers a few thousand groups
    from workers, measured slower on two cores (80 against 54 ms at 4,400 issues), and the
    outcome expression's subplans inflate the estimated cost past the JIT threshold, where
    compiling the query took longer than running it (979 against 345 ms for Cost by outcome
    at 1M ledger rows)."""
    connection = connections["default"]
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            cursor.execute("SET LOCAL jit = off")
        yield cursor


def _tuples(qs: QuerySet[Any]) -> list[tuple[Any, ...]]:
    sql, params = qs.query.sql_with_params()
    with connections[qs.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _dt(value: datetime) -> Value:
    return Value(value, output_field=DateTimeField())


def _billed(f: CostFilter) -> QuerySet[Any]:
    """1. Billed figures per issue, from the rollup."""
    return (
        rollup_rows(f)
        .values_list("issue_id")
        .annotate(a=Sum("amount"), s=Sum("quantity_seconds"), v=Sum("vcpu_seconds"))
        .order_by()
    )


def _alive(f: CostFilter, now: datetime) -> list[QuerySet[Any]]:
    """2. Sessions alive in the period and how long, per issue: sessions that ended in the
    period, then sessions not ended yet."""
    start, end = f.period.start, f.period.end
    alive_span = Least(Coalesce("ended_at", _dt(now)), _dt(end)) - Greatest(
        "started_at", _dt(start)
    )
    # Two range reads of the (org, ended_at) index, which carries every column used here:
    # one OR of both would read the sessions table, every session the org ever had.
    started = Session.objects.filter(_sessions(f), started_at__isnull=False, started_at__lt=end)
    return [
        started.filter(ended)
        .values_list("issue_id")
        .annotate(**{n: Count("*"), al: Sum(alive_span, output_field=DurationField())})
        .order_by()
        for ended, n, al in (
            (Q(ended_at__gt=start), "n1", "al1"),
            (Q(ended_at__isnull=True), "n2", "al2"),
        )
    ]


def _open(f: CostFilter, now: datetime) -> QuerySet[Any] | None:
    """3. Running stretches not billed yet (open intervals), per issue."""
    start, upto = f.period.start, min(now, f.period.end)
    if upto <= start:
        return None
    open_span = _dt(upto) - Greatest("started_at", _dt(start))
    return (
        RunningInterval.objects.filter(
            _sessions(f, "session__"), ended_at__isnull=True, started_at__lt=upto
        )
        .values_list("session__issue_id")
        .annotate(op=Sum(open_span, output_field=DurationField()))
        .order_by()
    )


def _daily(f: CostFilter) -> list[tuple[date, Decimal]]:
    """4. Cost per day, for the chart."""
    by_day = rollup_rows(f).values_list("day").annotate(a=Sum("amount")).order_by()
    per_day = {
        day if isinstance(day, date) else date.fromisoformat(day): _decimal(a, AMOUNT_QUANTUM)
        for day, a in _tuples(by_day)
    }
    return [(day, per_day.get(day, ZERO)) for day in f.period.days]


def _figures(r: IssueCost, values: Iterable[Any]) -> IssueCost:
    """Add one issue's grouped figures (amount, seconds, vCPU-seconds, then the sessions and
    alive spans of both session queries, then the open span; None where a query had no row)
    to ``r``, converted exactly as each query's own value."""
    a, s, v, n1, al1, n2, al2, op = values
    r.amount += _decimal(a, AMOUNT_QUANTUM)
    r.running_seconds += _decimal(s, SECONDS_QUANTUM)
    r.vcpu_seconds += _decimal(v, SECONDS_QUANTUM)
    r.sessions += int(n1 or 0) + int(n2 or 0)
    r.alive_seconds += _duration(al1) + _duration(al2)
    r.open_seconds += _duration(op)
    return r


def cost_per_issue(
    f: CostFilter,
    *,
    sort: str = DEFAULT_SORT,
    descending: bool = True,
    now: datetime | None = None,
    labels: bool = True,
) -> CostReport:
    """The report for a filter, every issue in it (the CSV). ``labels=False`` leaves issue
    keys and titles out (unless the sort needs them) so a caller can fetch them for the rows
    it shows (``CostReport.label``). The page shows one page of rows:
    ``billing.ranking.cost_per_issue_page`` ranks them in the database instead."""
    now = now or timezone.now()
    by_issue: dict[int | None, IssueCost] = {}

    def row(issue_id: int | None) -> IssueCost:
        found = by_issue.get(issue_id)
        if found is None:
            found = by_issue[issue_id] = IssueCost(
                issue_id, "", "" if issue_id is not None else UNATTRIBUTED
            )
        return found

    # Grouped by issue id alone: joining the issue's key and title into the GROUP BY would
    # sort wide text columns; labels come from one small query afterwards.
    for issue_id, amount, seconds, vcpu in _tuples(_billed(f)):
        _figures(row(issue_id), (amount, seconds, vcpu, None, None, None, None, None))
    ended, alive_now = _alive(f, now)
    for issue_id, n, span in _tuples(ended):
        _figures(row(issue_id), (None, None, None, n, span, None, None, None))
    for issue_id, n, span in _tuples(alive_now):
        _figures(row(issue_id), (None, None, None, None, None, n, span, None))
    running = _open(f, now)
    for issue_id, span in _tuples(running) if running is not None else ():
        _figures(row(issue_id), (None,) * 7 + (span,))

    unattributed = by_issue.pop(None, None)
    rows = list(by_issue.values())
    report = CostReport(f, rows, unattributed, IssueCost(None, "", "Total"), _daily(f), now=now)
    if labels or sort == "issue":
        report.label(rows, every=True)
    sort_key = SORTS.get(sort, SORTS[DEFAULT_SORT])[1]
    # Ties (and the secondary order) by issue id, ascending, whatever the direction.
    rows.sort(key=lambda r: r.issue_id or 0)
    rows.sort(key=sort_key, reverse=descending)

    totals = report.totals
    totals.paused_total = ZERO
    for r in [*rows, unattributed] if unattributed is not None else rows:
        totals.add(r)
        totals.paused_total += r.paused_seconds
    report.count = len(rows)
    return report
