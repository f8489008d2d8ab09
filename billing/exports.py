"""CSV export of Cost per Issue. The columns are a contract: add new ones at the end only.

One row per issue, then one ``Unattributed`` row (empty issue_key) for sessions without an
issue. There is no totals row: summing a column gives the page's total. The columns and the
range's edges are documented in docs/cost-per-issue-csv.md.
"""

from __future__ import annotations

import csv
from datetime import datetime
from decimal import Decimal

from django.http import HttpResponse

from billing.analytics import CostReport, IssueCost

# (column, meaning) — the page's "CSV columns" help is rendered from this list.
COLUMNS: list[tuple[str, str]] = [
    ("issue_key", "Issue key, e.g. ENG-142; empty for the Unattributed row"),
    ("issue_title", 'Issue title; "Unattributed" for sessions without an issue'),
    ("sessions", "Sessions alive at some time in the range"),
    ("running_seconds", "Billed running seconds in the range (ledger quantity, net of reversals)"),
    ("paused_seconds", "Alive but not running in the range (never billed)"),
    ("vcpu_seconds", "Running seconds × vCPUs"),
    ("amount", "Cost, unrounded (12 decimal places), net of reversals"),
    ("currency", "ISO 4217 currency of amount"),
    ("range_start", "Start of the range: 00:00:00 UTC of the first day (ISO-8601)"),
    (
        "range_end",
        "End of the range: 00:00:00 UTC of the day after the last day, so the page's "
        'inclusive "To" date is the day before this one (ISO-8601)',
    ),
    ("range_last_day", 'Last day in the range, included (YYYY-MM-DD): the page\'s "To" date'),
]

# Spreadsheets run cells that start with these as formulas; issue titles come from outside.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def _num(value: Decimal) -> str:
    return f"{value:f}"


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_row(row: IssueCost, report: CostReport) -> list[str]:
    return [
        _text(row.key),
        _text(row.title),
        str(row.sessions),
        _num(row.running_seconds),
        _num(row.paused_seconds),
        _num(row.vcpu_seconds),
        _num(row.amount),
        report.currency,
        _iso(report.filter.period.start),
        _iso(report.filter.period.end),
        f"{report.filter.period.last_day:%Y-%m-%d}",
    ]


def cost_per_issue_csv(report: CostReport) -> HttpResponse:
    period = report.filter.period
    filename = f"cost-per-issue_{period.first_day:%Y-%m-%d}_{period.last_day:%Y-%m-%d}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow([name for name, _ in COLUMNS])
    for row in report.rows:
        writer.writerow(csv_row(row, report))
    if report.unattributed is not None:
        writer.writerow(csv_row(report.unattributed, report))
    return response
