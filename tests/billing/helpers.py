"""Building sessions, intervals and ledger rows for billing tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Sum

from billing.ledger import interval_key
from billing.models import CostEvent
from pools.models import CapacityPool
from rensei.models import Organization
from sessions.intervals import close_open_interval, open_interval
from sessions.models import Issue, Session, SessionState
from tests.factories import (
    GIB_SECOND_PRICE,
    VCPU_SECOND_PRICE,
    CapacityPoolFactory,
    IssueFactory,
    SessionFactory,
)

VCPU_RATE = VCPU_SECOND_PRICE
GIB_RATE = GIB_SECOND_PRICE


def at(text: str) -> datetime:
    """'2025-03-01 10:00' (or with seconds) as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def expected_amount(seconds: Decimal | int, vcpu: int, memory_mb: int) -> Decimal:
    """The published formula, written out independently of billing.ledger."""
    per_second = vcpu * VCPU_RATE + Decimal(memory_mb) / Decimal(1024) * GIB_RATE
    return (Decimal(seconds) * per_second).quantize(Decimal("1e-12"))


def make_pool(org: Organization, name: str = "main", provider: str = "e2b") -> CapacityPool:
    # Billing reads a pool's name and provider only: no template config.
    return CapacityPoolFactory.create(org=org, name=name, provider=provider, config={})


def make_issue(org: Organization, key: str, title: str = "") -> Issue:
    return IssueFactory.create(org=org, key=key, title=title or f"Work on {key}")


def make_session(
    org: Organization,
    *,
    issue: Issue | None = None,
    pool: CapacityPool | None = None,
    vcpu: int = 2,
    memory_mb: int = 512,
    provider: str = "e2b",
    started_at: datetime | None = None,
) -> Session:
    return SessionFactory.create(
        org=org,
        issue=issue,
        pool=pool,
        provider=provider,
        vcpu=vcpu,
        memory_mb=memory_mb,
        state=SessionState.RUNNING,
        started_at=started_at,
    )


def run(session: Session, start: datetime, end: datetime, reason: str = "pause") -> CostEvent:
    """The sandbox ran from start to end: one interval, one ledger row."""
    if session.started_at is None:
        Session.objects.filter(pk=session.pk).update(started_at=start)
        session.started_at = start
    open_interval(session, at=start)
    interval = close_open_interval(session, at=end, reason=reason)
    assert interval is not None
    return CostEvent.objects.get(idempotency_key=interval_key(interval))


def finish(session: Session, end: datetime) -> None:
    """The session ended (terminated) at ``end``."""
    Session.objects.filter(pk=session.pk).update(state=SessionState.TERMINATED, ended_at=end)
    session.refresh_from_db()


def ledger_sum(**filters: object) -> Decimal:
    """The ledger's own SUM, to the 12 places rows keep (SQLite sums through floats)."""
    total = CostEvent.objects.filter(**filters).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    return total.quantize(Decimal("1e-12"))
