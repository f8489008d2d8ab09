"""Running intervals: opened when a sandbox starts running, closed when it stops.

Closing an interval emits its cost event in the same transaction, so an interval is closed
if and only if it is billed. Both functions lock the session's open interval, so the daily
accrual job and a pause/terminate job racing on the same session cannot bill twice.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from sessions.models import RunningInterval, Session


def open_interval(session: Session, at: datetime) -> RunningInterval:
    """Open an interval unless one is open already (idempotent: returns the open one)."""
    with transaction.atomic():
        current = (
            RunningInterval.objects.select_for_update()
            .filter(session=session, ended_at__isnull=True)
            .first()
        )
        if current is not None:
            return current
        return RunningInterval.objects.create(session=session, started_at=at)


def close_open_interval(session: Session, at: datetime, reason: str) -> RunningInterval | None:
    """Close the open interval at ``at`` and bill it. None when nothing was open.

    ``at`` earlier than the interval's start (clock skew between workers) closes it empty.
    """
    from billing.ledger import emit_sandbox_cost_event

    with transaction.atomic():
        current = (
            # of=("self",): PostgreSQL refuses FOR UPDATE on the nullable side of the outer
            # join to the pool; the interval row is the lock that matters.
            RunningInterval.objects.select_for_update(of=("self",))
            .select_related("session", "session__pool")
            .filter(session=session, ended_at__isnull=True)
            .first()
        )
        if current is None:
            return None
        current.ended_at = max(at, current.started_at)
        current.closed_reason = reason
        current.save(update_fields=["ended_at", "closed_reason"])
        emit_sandbox_cost_event(current)
        return current
