"""Rows the capacity page tests look at: sessions on a pool, audit events of one action."""

from __future__ import annotations

from pools.models import CapacityPool
from rensei.models import AuditEvent
from tests.factories import SessionFactory


def sessions(pool: CapacityPool, *states: str) -> None:
    """One session on ``pool`` in each of ``states``."""
    for state in states:
        SessionFactory.create(org=pool.org, pool=pool, provider=pool.provider, state=state)


def audits(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))
