"""Month close: finance freezes a UTC month of an org's ledger.

Once a month is closed its totals never change. The database refuses a ledger row whose
usage day lies in a standing closed month (``billing/close_triggers.py``), so a late row (an
interval that closes after the close, a reversal of a row in the month, a reconciliation
adjustment) is dated in the first open month after it instead, and says which month it
adjusts (``CostEvent.adjusts_month``): ``ledger_date`` decides that for every writer.

Finance (or an admin) closes a month once it has ended; only an admin reopens one, and only
with a reason, which the audit log keeps. A reopen is a one-way change of the close row (the
database refuses any other change); closing again adds a new row, so history stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Min, Sum
from django.utils import timezone

from billing.models import AMOUNT_QUANTUM, SECONDS_QUANTUM, DailyCost, MonthClose, usage_day
from billing.periods import midnight
from rensei.audit import record
from rensei.models import Channel, Organization, Role

CLOSE_ROLES = frozenset({Role.FINANCE, Role.ADMIN})
REOPEN_ROLES = frozenset({Role.ADMIN})


class CloseRefused(ValueError):
    """The month cannot be closed or reopened now; the message says why."""


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's ledger window: rows with start < occurred_at <= end (see usage_day)."""
    return midnight(month), midnight(next_month(month))


def standing_months(org_id: int) -> set[date]:
    return set(
        MonthClose.objects.filter(org_id=org_id, reopened_at__isnull=True).values_list(
            "month", flat=True
        )
    )


def ledger_date(
    org_id: int, occurred_at: datetime, now: datetime | None = None
) -> tuple[datetime, date | None]:
    """Where a new ledger row for usage at ``occurred_at`` is dated: there, unless its month
    is closed; then in the first open month after it (at ``now``, or at that month's end if
    it is a past month), with the closed month it adjusts."""
    month = month_of(usage_day(occurred_at))
    closed = standing_months(org_id)
    if month not in closed:
        return occurred_at, None
    target = next_month(month)
    while target in closed:
        target = next_month(target)
    now = now or timezone.now()
    # The current month can never be closed (it has not ended), so target <= now's month.
    dated = min(max(now, occurred_at), month_bounds(target)[1])
    return dated, month


def months_totals(org_id: int, first: date, last: date) -> dict[date, dict[str, Decimal | int]]:
    """Net totals of each month from ``first`` to ``last`` (first days), from the daily
    rollup (which the database keeps = ledger), in one query. PostgreSQL sums each day (its
    NUMERIC sums are exact) and Python adds up the days; SQLite sums through floats, so
    Python adds up its rows."""
    rows = DailyCost.objects.filter(org_id=org_id, day__gte=first, day__lt=next_month(last))
    values: Iterable[tuple[Any, ...]]
    if connection.vendor == "postgresql":
        # Summed per day in the index's order (exact NUMERIC sums), then per month here.
        values = (
            rows.values_list("day")
            .annotate(Sum("amount"), Sum("quantity_seconds"), Sum("entries"))
            .order_by()
        )
    else:  # every row: SQLite sums through floats
        values = rows.values_list("day", "amount", "quantity_seconds", "entries")
    sums: dict[date, list[Any]] = {}
    for day, a, s, n in values:
        t = sums.setdefault(month_of(day), [Decimal(0), Decimal(0), 0])
        t[0] += Decimal(str(a))
        t[1] += Decimal(str(s))
        t[2] += int(n)
    out: dict[date, dict[str, Decimal | int]] = {}
    month = first
    while month <= last:
        a, s, n = sums.get(month, (0, 0, 0))
        out[month] = {
            "amount": Decimal(a).quantize(AMOUNT_QUANTUM),
            "seconds": Decimal(s).quantize(SECONDS_QUANTUM),
            "entries": int(n),
        }
        month = next_month(month)
    return out


def month_totals(org_id: int, month: date) -> dict[str, Decimal | int]:
    """The month's net totals (``months_totals`` of that month alone)."""
    return months_totals(org_id, month, month)[month]


def first_month(org: Organization) -> date:
    """The first month the org has anything in: its creation, or its first usage day if the
    ledger holds earlier days (history imported, a clock set back)."""
    first = month_of(org.created_at.date())
    earliest = DailyCost.objects.filter(org_id=org.pk).aggregate(day=Min("day"))["day"]
    return min(first, month_of(earliest)) if earliest is not None else first


def close_month(
    org: Organization,
    month: date,
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    channel: str = Channel.WEB,
    now: datetime | None = None,
) -> MonthClose:
    """Close ``month`` (its first day) for ``org``, freezing its totals. Raises
    ``CloseRefused`` for a month that has not ended or is closed already."""
    now = now or timezone.now()
    month = month_of(month)
    if month_bounds(month)[1] > now:
        raise CloseRefused(f"{month:%B %Y} has not ended yet: a month closes after its last day.")
    user = actor if actor is not None and actor.is_authenticated else None
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Waits for ledger inserts in flight and holds new ones until the close
                # commits, so the frozen totals are the month's final ones.
                with connection.cursor() as cursor:
                    cursor.execute("LOCK TABLE billing_costevent IN SHARE MODE")
            totals = month_totals(org.pk, month)
            close = MonthClose.objects.create(
                org=org,
                month=month,
                amount=totals["amount"],
                quantity_seconds=totals["seconds"],
                entries=int(totals["entries"]),
                closed_at=now,
                closed_by=user,  # type: ignore[misc]
            )
    except IntegrityError:
        raise CloseRefused(f"{month:%B %Y} is closed already.") from None
    record(
        org=org,
        action="billing.month_closed",
        target=f"{month:%Y-%m}",
        actor=actor,
        channel=channel,
        detail={"amount": str(close.amount), "entries": close.entries},
    )
    return close


def reopen_month(
    org: Organization,
    month: date,
    *,
    reason: str,
    actor: AbstractBaseUser | AnonymousUser | None,
    channel: str = Channel.WEB,
) -> MonthClose:
    """Reopen a closed month with a reason (audited). Raises ``CloseRefused`` without a
    reason or when the month is not closed."""
    reason = reason.strip()
    if not reason:
        raise CloseRefused("A reason is required to reopen a closed month.")
    month = month_of(month)
    user = actor if actor is not None and actor.is_authenticated else None
    now = timezone.now()
    with transaction.atomic():
        changed = MonthClose.objects.filter(org=org, month=month, reopened_at__isnull=True).update(
            reopened_at=now, reopened_by=user, reopen_reason=reason
        )
        if not changed:
            raise CloseRefused(f"{month:%B %Y} is not closed.")
        close = MonthClose.objects.get(org=org, month=month, reopened_at=now)
        record(
            org=org,
            action="billing.month_reopened",
            target=f"{month:%Y-%m}",
            actor=actor,
            channel=channel,
            detail={"reason": reason[:500], "frozen_amount": str(close.amount)},
        )
    return close


@dataclass(frozen=True)
class MonthStatus:
    month: date
    close: MonthClose | None

    @property
    def closed(self) -> bool:
        return self.close is not None


def statuses(org_id: int, first: date, last: date) -> list[MonthStatus]:
    """Each month overlapping [first, last], with its standing close (None when open)."""
    closes = {
        c.month: c
        for c in MonthClose.objects.filter(
            org_id=org_id, reopened_at__isnull=True, month__gte=month_of(first), month__lte=last
        ).select_related("closed_by")
    }
    out, month = [], month_of(first)
    while month <= last:
        out.append(MonthStatus(month, closes.get(month)))
        month = next_month(month)
    return out
