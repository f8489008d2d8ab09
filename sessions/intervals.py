"""Running intervals: opened when a sandbox starts running, closed when it stops.

Sessions own the intervals; billing owns what they cost. Closing an interval sends
``interval_closed`` inside the closing transaction, and billing's receiver writes the cost
event there (``billing.apps``), so an interval is closed if and only if it is billed: a
receiver that fails rolls the close back with it. Both functions lock the session's open
interval, so the daily accrual job and a pause/terminate job racing on the same session
cannot bill twice.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.dispatch import Signal

from sessions.models import RunningInterval, Session

# Sent with ``interval=`` (the closed RunningInterval, its session and pool loaded) in the
# transaction that closed it. Receivers must not swallow their errors: a close that could
# not be billed must not happen.
interval_closed = Signal()


def open_interval(session: Session, at: datetime, *, first: bool = False) -> RunningInterval:
    """Open an interval unless one is open already (idempotent: returns the open one).

    ``first``: the caller just moved a session that never ran to running (provision), so
    none can be open and the look-up is skipped (the partial unique constraint still holds).
    """
    if first:
        return RunningInterval.objects.create(session=session, started_at=at)
    with transaction.atomic(savepoint=False):
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
        interval_closed.send(sender=RunningInterval, interval=current)
        return current
