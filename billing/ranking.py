"""Cost per Issue, one page of it ranked in the database (``cost_per_issue_page``).

The page shows 50 issues of the thousands a period can hold. Instead of building every
issue's row in Python and sorting them (``billing.analytics.cost_per_issue``, which the CSV
and the issue-key sort still use), the grouped queries of that report become branches of
one SQL query that ranks the issues and returns only the page's rows, the top ten by cost
and the Unattributed row, with the totals. Both paths give the same rows, order, ties and
figures (``tests/billing/test_cost_per_issue_ranking.py``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from billing.analytics import (
    DEFAULT_SORT,
    UNATTRIBUTED,
    CostFilter,
    CostReport,
    IssueCost,
    _alive,
    _billed,
    _daily,
    _decimal,
    _figures,
    _open,
    cost_per_issue,
    report_cursor,
)
from billing.models import AMOUNT_PLACES, AMOUNT_QUANTUM, SECONDS_QUANTUM

# The page's ranking, in SQL: the grouped queries above as branches of one UNION ALL, merged
# per issue (each branch has one row per issue and each figure comes from one branch, so MAX
# picks that query's own value: cheaper than SUM, which keeps an accumulator per group), then
# four parts of one result: the totals over every issue, one page of rows by the sort (ties
# by issue id ascending, as ``SORTS`` orders them), the top ten by cost (none on the first
# page by cost, most first, which starts with them) and the Unattributed row. Each part is a
# top-N sort cut with LIMIT, then numbered (rn, the order the rows keep through the UNION
# ALL), and the totals are one plain aggregate.
TOP = 10
_FIGURES = ("a", "s", "v", "n1", "al1", "n2", "al2", "op")
_TOTALS = ("issues", "ta", "ts", "tv", "tn", "tp")
TOTALS, PAGE, TOP_TEN, UNATTRIBUTED_ROW = 0, 1, 2, 3
MAX_PAGE = 10**9


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
    branches: list[tuple[QuerySet[Any], tuple[str, ...]]],
    vendor: str,
    sort: str,
    desc: bool,
    first_page: bool = False,
) -> tuple[str, list[Any], bool]:
    """The ranking query, its parameters (the page's LIMIT and OFFSET to follow), and
    whether its page holds the top ten: the first page (of ten rows or more) by cost, most
    first, starts with them, and the query then has no top-ten part of its own."""
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
    merged = ", ".join(f"MAX({c}) AS {c}" for c in _FIGURES)
    keys = _sort_sql(vendor)
    order = f"{keys.get(sort, keys[DEFAULT_SORT])} {'DESC' if desc else 'ASC'}, issue_id ASC"
    by_cost = f"{keys['cost']} DESC, issue_id ASC"
    first_by_cost = first_page and order == by_cost
    figures = ", ".join(_FIGURES)
    none = ", ".join(f"NULL AS {c}" for c in _TOTALS)

    def part(tag: int, where: str, order: str = "issue_id", limit: str = "") -> str:
        # rn: the row's place in its part (a UNION ALL keeps no order of its own), numbered
        # after the LIMIT, so the part is a top-N sort of the issues, not a sort of them all.
        rows = f"SELECT * FROM figs WHERE {where} ORDER BY {order} {limit}"
        return (
            f"SELECT {tag} AS part, issue_id, {figures}, ROW_NUMBER() OVER (ORDER BY {order}) "
            f"AS rn, {none} FROM ({rows}) p"
        )

    top_ten = (
        ""
        if first_by_cost
        else f"UNION ALL {part(TOP_TEN, 'issue_id IS NOT NULL', by_cost, f'LIMIT {TOP}')}"
    )
    sql = f"""
        WITH per AS (
            SELECT issue_id, {merged} FROM ({" UNION ALL ".join(selects)}) u GROUP BY issue_id
        ), figs AS (
            SELECT per.*, COALESCE(n1, 0) + COALESCE(n2, 0) AS n, {keys["_paused"]} AS paused_ms
            FROM per
        )
        SELECT {TOTALS} AS part, NULL AS issue_id, {", ".join(f"NULL AS {c}" for c in _FIGURES)},
               NULL AS rn, COUNT(issue_id) AS issues, SUM(a) AS ta, SUM(s) AS ts, SUM(v) AS tv,
               SUM(n) AS tn, SUM(paused_ms) AS tp
        FROM figs
        UNION ALL {part(PAGE, "issue_id IS NOT NULL", order, "LIMIT %s OFFSET %s")}
        {top_ten}
        UNION ALL {part(UNATTRIBUTED_ROW, "issue_id IS NULL")}
    """
    return sql, params, first_by_cost


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
    sql, params, first_by_cost = _ranking_sql(
        branches, connections["default"].vendor, sort, descending, number == 1 and per_page >= TOP
    )
    with report_cursor() as cursor:
        for _ in range(2):
            # Out of range (0, -1, 10**30): any offset in range of a BIGINT; the count read
            # with it gives the last page, queried next.
            offset = min(max(number - 1, 0), MAX_PAGE) * per_page
            cursor.execute(sql, [*params, per_page, offset])
            names = [column[0] for column in cursor.description]
            found = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
            totals = next(row for row in found if row["part"] == TOTALS)
            count = int(totals["issues"] or 0)
            pages = max(1, -(-count // per_page))
            if 1 <= number <= pages:
                break
            number = pages  # as Paginator.get_page: out of range, the last page
    report = CostReport(f, [], None, IssueCost(None, "", "Total"), _daily(f), now=now)
    report.count, report.page_number = count, number
    parts: dict[int, list[tuple[int, IssueCost]]] = {PAGE: [], TOP_TEN: [], UNATTRIBUTED_ROW: []}
    by_issue: dict[int | None, IssueCost] = {}  # an issue on the page and in the top ten: one row
    for row in found:
        if row["part"] == TOTALS:
            continue
        issue_id = row["issue_id"]
        r = by_issue.get(issue_id)
        if r is None:
            title = "" if issue_id is not None else UNATTRIBUTED
            r = by_issue[issue_id] = IssueCost(issue_id, "", title)
            _figures(r, (row[c] for c in _FIGURES))
        parts[row["part"]].append((int(row["rn"]), r))
    report.rows = [r for _, r in sorted(parts[PAGE], key=lambda x: x[0])]
    report.top_rows = (
        report.rows[:TOP]
        if first_by_cost
        else [r for _, r in sorted(parts[TOP_TEN], key=lambda x: x[0])]
    )
    report.unattributed = next((r for _, r in parts[UNATTRIBUTED_ROW]), None)
    t = report.totals
    t.amount = _decimal(totals["ta"], AMOUNT_QUANTUM)
    t.running_seconds = _decimal(totals["ts"], SECONDS_QUANTUM)
    t.vcpu_seconds = _decimal(totals["tv"], SECONDS_QUANTUM)
    t.sessions = int(totals["tn"] or 0)
    t.paused_total = (Decimal(int(totals["tp"] or 0)) / 1000).quantize(SECONDS_QUANTUM)
    return report
