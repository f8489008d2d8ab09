"""The FOCUS export: the ledger rows of a Cost per Issue filter in the FinOps Open Cost and
Usage Specification (FOCUS 1.0) column set, for finance tools. One CSV row per ledger row
(reversals and adjustments included, as negative or corrective rows), so ``BilledCost``
sums to the page's total. The columns and their meaning are in docs/focus-export.md, which
a test reads to validate the export; add columns at the end only.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal

from django.http import HttpResponse

from billing.closing import month_bounds, month_of
from billing.ledger import price_per_second
from billing.models import AMOUNT_QUANTUM, CostEvent, CostEventQuerySet, CostKind, usage_day
from billing.periods import Period
from pools.providers.registry import provider_labels
from rensei.models import Organization

COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "BillingAccountId",
    "BillingAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "PricingCategory",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceCategory",
    "ServiceName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "RegionId",
    "RegionName",
    "Tags",
)

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: str) -> str:
    # Spreadsheets run cells that start like formulas; issue keys and pool names come from
    # outside. Numbers are written by us and never start with these but "-".
    return "'" + value if value.startswith(FORMULA_START) else value


def _num(value: Decimal) -> str:
    return f"{value:f}"


def _category(row: CostEvent) -> tuple[str, str]:
    """(ChargeCategory, ChargeClass): usage, or an adjustment; corrections of earlier
    charges (reversals, late rows for a closed month, settlements) are of class Correction."""
    if row.reverses_id is not None:
        return "Adjustment", "Correction"
    if row.kind == CostKind.ADJUSTMENT:
        return "Adjustment", "Correction"
    return "Usage", ""


def focus_row(row: CostEvent, org: Organization, labels: dict[str, str]) -> list[str]:
    day: date = usage_day(row.occurred_at)
    period_start, period_end = month_bounds(month_of(day))
    charge_start = row.interval_start or row.occurred_at
    charge_end = row.interval_end or row.occurred_at
    category, klass = _category(row)
    provider = labels.get(row.provider, row.provider)
    unit_price = price_per_second(row.vcpu, row.memory_mb, row.rate_card).quantize(AMOUNT_QUANTUM)
    resource = (row.session.sandbox_id if row.session else "") or (
        f"session-{row.session_id}" if row.session_id else ""
    )
    tags = {"rensei:org": org.slug}
    if row.issue is not None:
        tags["rensei:issue"] = row.issue.key
    if row.pool is not None:
        tags["rensei:pool"] = row.pool.name
    if row.session_id:
        tags["rensei:session"] = str(row.session_id)
    if row.adjusts_month:
        tags["rensei:adjusts_month"] = f"{row.adjusts_month:%Y-%m}"
    description = (
        f"{provider} sandbox running seconds, {row.vcpu} vCPU, {row.memory_mb} MiB"
        if category == "Usage"
        else (row.reason or "Reversal of a ledger entry")[:500]
    )
    amount = _num(row.amount)
    return [
        amount,
        amount,
        amount,
        amount,
        row.currency,
        _text(org.slug),
        _text(org.name),
        _iso(period_start),
        _iso(period_end),
        _iso(charge_start),
        _iso(charge_end),
        category,
        klass,
        _text(description),
        "Usage-Based",
        _num(row.quantity_seconds),
        "Seconds",
        _num(row.quantity_seconds),
        "Seconds",
        "Standard",
        _num(unit_price),
        _num(unit_price),
        provider,
        provider,
        provider,
        "Compute",
        f"{provider} Sandboxes",
        _text(resource),
        f"Session {row.session_id}" if row.session_id else "",
        "Sandbox",
        f"{row.provider}-sandbox-seconds",
        f"ratecard-{row.rate_card_id}",
        str(row.pool_id or ""),
        _text(row.pool.name if row.pool is not None else ""),
        "",
        "",
        json.dumps(tags, sort_keys=True),
    ]


def focus_lines(rows: CostEventQuerySet, org: Organization) -> Iterator[str]:
    writer = csv.writer(_Echo())
    labels = provider_labels()
    yield writer.writerow(COLUMNS)
    ordered = rows.select_related("session", "issue", "pool", "rate_card").order_by(
        "occurred_at", "id"
    )
    for row in ordered.iterator(chunk_size=2000):
        yield writer.writerow(focus_row(row, org, labels))


def focus_csv(rows: CostEventQuerySet, org: Organization, period: Period) -> HttpResponse:
    # Rows are read in chunks; the response is one body (the pages' views return
    # HttpResponse), so a very long range is better exported a month at a time.
    filename = f"focus_{period.first_day:%Y-%m-%d}_{period.last_day:%Y-%m-%d}.csv"
    response = HttpResponse(focus_lines(rows, org), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
