"""Proof that the daily rollup equals the ledger it is derived from.

The database keeps them equal (the rollup moves only inside the ledger's insert trigger,
billing/triggers.py); this check is the independent proof, run by ``manage.py check_ledger``
and daily by beat. It recomputes the ledger's sums per (org, usage day, issue, pool,
provider) with the rollup trigger's own grouping and compares every figure with the rollup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from celery import shared_task
from django.db import connection

from billing import triggers
from billing.models import AMOUNT_QUANTUM, SECONDS_QUANTUM, DailyCost
from rensei import ops
from rensei.audit import record
from rensei.models import Channel, Organization

log = logging.getLogger(__name__)

Key = tuple[int, date, int | None, int | None, str]
FIGURES = ("amount", "quantity_seconds", "vcpu_seconds", "entries")


@dataclass(frozen=True)
class Mismatch:
    key: Key
    ledger: dict[str, Any] | None
    rollup: dict[str, Any] | None

    def __str__(self) -> str:
        org, day, issue, pool, provider = self.key
        return (
            f"org {org} day {day} issue {issue} pool {pool} {provider}: "
            f"ledger {self.ledger} rollup {self.rollup}"
        )


def _places() -> tuple[Decimal, Decimal]:
    # SQLite sums decimals through floats: compare to the nano-unit there, exactly on PG.
    if connection.vendor == "sqlite":
        return Decimal("1e-9"), SECONDS_QUANTUM
    return AMOUNT_QUANTUM, SECONDS_QUANTUM


def _figures(amount: Any, seconds: Any, vcpu_seconds: Any, entries: Any) -> dict[str, Any]:
    money, secs = _places()
    return {
        "amount": Decimal(str(amount)).quantize(money),
        "quantity_seconds": Decimal(str(seconds)).quantize(secs),
        "vcpu_seconds": Decimal(str(vcpu_seconds)).quantize(secs),
        "entries": int(entries),
    }


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def ledger_sums() -> dict[Key, dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(triggers.SUMS[connection.vendor])
        return {
            (org, _day(day), issue, pool, provider): _figures(*rest)
            for org, day, issue, pool, provider, *rest in cursor.fetchall()
        }


def rollup_rows() -> dict[Key, dict[str, Any]]:
    rows = DailyCost.objects.values_list(
        "org_id", "day", "issue_id", "pool_id", "provider", *FIGURES
    )
    return {
        (org, _day(day), issue, pool, provider): _figures(*rest)
        for org, day, issue, pool, provider, *rest in rows
    }


def mismatches() -> list[Mismatch]:
    """Every group where the rollup and the ledger disagree (a group the rollup lacks, one it
    has that the ledger does not, or any figure different). Empty when they agree."""
    ledger, rollup = ledger_sums(), rollup_rows()
    return [
        Mismatch(key, ledger.get(key), rollup.get(key))
        for key in sorted(ledger.keys() | rollup.keys(), key=str)
        if ledger.get(key) != rollup.get(key)
    ]


def check_and_alert() -> list[Mismatch]:
    """Run the check; on a mismatch log an ERROR and write an audit event per org involved
    (the admin's audit log shows it), so a drift is seen the day it happens."""
    found = mismatches()
    if not found:
        return found
    log.error("ledger check: the rollup disagrees with the ledger in %d group(s)", len(found))
    ops.bump(ops.ALERT, "ledger_mismatch")
    for item in found[:50]:
        log.error("ledger check: %s", item)
    by_org: dict[int, int] = {}
    for item in found:
        by_org[item.key[0]] = by_org.get(item.key[0], 0) + 1
    for org in Organization.objects.filter(pk__in=by_org):
        record(
            org=org,
            action="ledger.mismatch",
            target="daily cost rollup",
            channel=Channel.JOB,
            detail={"groups": by_org[org.pk]},
        )
    return found


@shared_task(name="billing.integrity.check_ledger")
def check_ledger() -> int:
    """Beat runs this daily (registered by ``BillingConfig.ready``): returns the number of
    disagreeing groups, 0 when the rollup equals the ledger."""
    return len(check_and_alert())
