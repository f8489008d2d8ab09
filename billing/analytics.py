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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections, transaction
from django.db.models import Count, DateTimeField, DurationField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from billing.ledger import exact_seconds
from billing.models import (
    AMOUNT_PLACES,
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
    # one page of it (``cost_per_issue_page``), all the issues the pages hold.
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


def rollup_totals(f: CostFilter, issue_key: str | None = None) -> dict[str, Any]:
    """What ``ledger_rows(f).totals()`` answers (rows, amount, seconds), from the rollup:
    a few hundred rollup rows instead of every ledger row in the range."""
    qs = rollup_rows(f)
    if issue_key is not None:
        qs = qs.filter(issue__key=issue_key)
    t = qs.aggregate(n=Sum("entries"), amount=Sum("amount"), seconds=Sum("quantity_seconds"))
    return {
        "n": int(t["n"] or 0),
        "amount": _decimal(t["amount"], AMOUNT_QUANTUM),
        "seconds": _decimal(t["seconds"], SECONDS_QUANTUM),
    }


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
    it shows (``CostReport.label``). The page shows one page of rows: ``cost_per_issue_page``
    ranks them in the database instead."""
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


# The page's ranking, in SQL: the four grouped queries above as branches of one UNION ALL,
# summed per issue (each figure comes from one branch, so its sum is that query's own
# value), ranked by the sort with ties by issue id ascending as ``SORTS`` orders them, and
# only one page of rows, the top ten by cost and the Unattributed row returned, with the
# totals and the number of issues as window sums over every issue.
TOP = 10
_FIGURES = ("a", "s", "v", "n1", "al1", "n2", "al2", "op")


def _micros(vendor: str, column: str) -> str:
    """A summed duration as integer microseconds (exact: an interval holds whole
    microseconds): PostgreSQL sums intervals, SQLite sums microseconds already."""
    if vendor == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"
    return column


def _millis(column: str) -> str:
    """Integer microseconds to milliseconds, rounded half to even as ``_duration`` rounds.
    Integer division truncates on both backends; the remainder takes the dividend's sign."""
    x = f"COALESCE({column}, 0)"
    q, r = f"({x} / 1000)", f"({x} %% 1000)"
    return (
        f"({q} + CASE WHEN {r} > 500 OR ({r} = 500 AND {q} %% 2 <> 0) THEN 1 "
        f"WHEN {r} < -500 OR ({r} = -500 AND {q} %% 2 <> 0) THEN -1 ELSE 0 END)"
    )


def _sort_sql(vendor: str) -> dict[str, str]:
    greatest = "GREATEST" if vendor == "postgresql" else "MAX"
    # IssueCost.paused_seconds in milliseconds: alive (each session query's sum rounded to
    # the millisecond), minus the billed seconds (three places), minus the open stretch.
    paused = (
        f"{greatest}(0, {_millis('al1')} + {_millis('al2')} "
        f"- CAST(ROUND(COALESCE(s, 0) * 1000) AS BIGINT) - {_millis('op')})"
    )

    def exact(column: str, places: int) -> str:
        # SQLite sums decimals through floats: equal sums can differ in the last bits, and
        # ``_decimal`` rounds them to the stored places before Python compares them.
        value = f"COALESCE({column}, 0)"
        return value if vendor == "postgresql" else f"ROUND({value}, {places})"

    return {
        "sessions": "n",
        "running": exact("s", 3),
        "paused": "paused_ms",
        "vcpu": exact("v", 3),
        "cost": exact("a", AMOUNT_PLACES),
        "_paused": paused,
    }


def _ranking_sql(
    branches: list[tuple[QuerySet[Any], tuple[str, ...]]], vendor: str, sort: str, desc: bool
) -> tuple[str, list[Any]]:
    selects: list[str] = []
    params: list[Any] = []
    for qs, names in branches:
        sql, p = qs.query.sql_with_params()
        params.extend(p)
        cols = []
        for figure in _FIGURES:
            if figure not in names:
                kind = "NUMERIC" if figure in ("a", "s", "v") else "BIGINT"
                cols.append(f"CAST(NULL AS {kind}) AS {figure}")
            elif figure.startswith(("al", "op")):
                cols.append(f"{_micros(vendor, figure)} AS {figure}")
            else:
                cols.append(figure)
        # The first column: the issue id, "session__issue_id" for the open intervals.
        key = qs.query.values_select[0]
        selects.append(f'SELECT "{key}" AS issue_id, {", ".join(cols)} FROM ({sql}) branch')
    # Counts and microseconds summed back to integers (PostgreSQL sums BIGINT as NUMERIC):
    # the paused figure below is integer arithmetic on every issue.
    sums = ", ".join(
        f"SUM({c}) AS {c}" if c in ("a", "s", "v") else f"CAST(SUM({c}) AS BIGINT) AS {c}"
        for c in _FIGURES
    )
    keys = _sort_sql(vendor)
    order = f"{keys.get(sort, keys[DEFAULT_SORT])} {'DESC' if desc else 'ASC'}, issue_id ASC"
    unattributed = "PARTITION BY issue_id IS NULL"
    sql = f"""
        WITH per AS (
            SELECT issue_id, {sums} FROM ({" UNION ALL ".join(selects)}) u GROUP BY issue_id
        ), figs AS (
            SELECT per.*, COALESCE(n1, 0) + COALESCE(n2, 0) AS n, {keys["_paused"]} AS paused_ms
            FROM per
        ), ranked AS (
            SELECT figs.*,
                   ROW_NUMBER() OVER ({unattributed} ORDER BY {order}) AS rn,
                   ROW_NUMBER() OVER ({unattributed} ORDER BY {keys["cost"]} DESC, issue_id)
                       AS top_rn,
                   COUNT(issue_id) OVER () AS issues,
                   SUM(a) OVER () AS ta, SUM(s) OVER () AS ts, SUM(v) OVER () AS tv,
                   SUM(n) OVER () AS tn, SUM(paused_ms) OVER () AS tp
            FROM figs
        )
        SELECT issue_id, {", ".join(_FIGURES)}, rn, top_rn, issues, ta, ts, tv, tn, tp
        FROM ranked
        WHERE issue_id IS NULL OR (rn > %s AND rn <= %s) OR top_rn <= {TOP}
    """
    return sql, params


def _page_number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1  # as Paginator.get_page: not a number, the first page


def cost_per_issue_page(
    f: CostFilter,
    *,
    sort: str = DEFAULT_SORT,
    descending: bool = True,
    page: Any = 1,
    per_page: int = 50,
    now: datetime | None = None,
) -> CostReport:
    """One page of ``cost_per_issue(f, sort=…, descending=…)``: the same rows in the same
    order, figures and totals, ranked in the database so only the page's rows (and the top
    ten by cost, for the chart) come back. ``page`` is read as ``Paginator.get_page`` reads
    it: not a number, the first page; out of range, the last. Labels are left to
    ``CostReport.label``. The issue sort (natural order of the keys) is Python's: that one
    computes the whole report and cuts the page out of it."""
    now = now or timezone.now()
    number = _page_number(page)
    if sort == "issue":
        report = cost_per_issue(f, sort=sort, descending=descending, now=now)
        pages = max(1, -(-report.count // per_page))
        report.page_number = number if 1 <= number <= pages else pages
        first = (report.page_number - 1) * per_page
        report.top_rows = report.top
        report.rows = report.rows[first : first + per_page]
        return report
    ended, alive_now = _alive(f, now)
    branches: list[tuple[QuerySet[Any], tuple[str, ...]]] = [
        (_billed(f), ("a", "s", "v")),
        (ended, ("n1", "al1")),
        (alive_now, ("n2", "al2")),
    ]
    running = _open(f, now)
    if running is not None:
        branches.append((running, ("op",)))
    sql, params = _ranking_sql(branches, connections["default"].vendor, sort, descending)
    connection = connections["default"]
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A parallel plan gathers a few thousand groups from workers: measured slower
            # than one process (80 against 54 ms at 4,400 issues on two cores).
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        for _ in range(2):
            cursor.execute(sql, [*params, (number - 1) * per_page, number * per_page])
            found = cursor.fetchall()
            count = int(found[0][11]) if found else 0
            pages = max(1, -(-count // per_page))
            if 1 <= number <= pages:
                break
            number = pages  # as Paginator.get_page: out of range, the last page
    report = CostReport(f, [], None, IssueCost(None, "", "Total"), _daily(f), now=now)
    report.count, report.page_number = count, number
    ranked, top = [], []
    for values in found:
        issue_id, rn, top_rn = values[0], values[9], values[10]
        title = "" if issue_id is not None else UNATTRIBUTED
        r = _figures(IssueCost(issue_id, "", title), values[1:9])
        if issue_id is None:
            report.unattributed = r
            continue
        if (number - 1) * per_page < rn <= number * per_page:
            ranked.append((rn, r))
        if top_rn <= TOP:
            top.append((top_rn, r))
    report.rows = [r for _, r in sorted(ranked, key=lambda x: x[0])]
    report.top_rows = [r for _, r in sorted(top, key=lambda x: x[0])]
    if found:
        t = report.totals
        ta, ts, tv, tn, tp = found[0][12:17]
        t.amount = _decimal(ta, AMOUNT_QUANTUM)
        t.running_seconds = _decimal(ts, SECONDS_QUANTUM)
        t.vcpu_seconds = _decimal(tv, SECONDS_QUANTUM)
        t.sessions = int(tn or 0)
        t.paused_total = (Decimal(int(tp or 0)) / 1000).quantize(SECONDS_QUANTUM)
    else:
        report.totals.paused_total = ZERO
    return report
