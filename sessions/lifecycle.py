"""State changes that start or stop a sandbox's running time: one transaction each.

Jobs and the reconciler both call these. Each moves the session through the state machine's
conditional update and opens or closes its running interval in the same transaction (a
closed interval is billed there too), then frees the pool's slot when the session stopped
holding one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from pools.providers.base import ProviderError, SandboxHandle
from sessions.audit import audit
from sessions.dispatch import dispatch_waiting
from sessions.intervals import close_open_interval, open_interval
from sessions.models import RunningInterval, Session, SessionState
from sessions.state import transition, transition_where

S = SessionState
log = logging.getLogger(__name__)


def free_slot(session: Session) -> None:
    """A slot may have freed on the session's pool: start waiting sessions and resumes."""
    if session.pool_id is not None and session.pool is not None:
        dispatch_waiting(session.pool)


def record_handle(session: Session, handle: SandboxHandle, note: str) -> bool:
    """provisioning → running with the handle, and the running interval opened: one
    transaction, and only if nobody recorded a sandbox first."""
    now = timezone.now()
    # Bill from the sandbox's own start, bounded by when we asked and by now (clock skew).
    started = min(now, max(handle.started_at, session.created_at))
    with transaction.atomic():
        won = transition_where(
            session,
            S.RUNNING,
            expected=[S.PROVISIONING],
            where={"sandbox_id": ""},
            values={
                "sandbox_id": handle.sandbox_id,
                "template": handle.template[:128],
                "vcpu": handle.vcpu or None,
                "memory_mb": handle.memory_mb or None,
                "last_error": "",
            },
            note=f"sandbox {handle.sandbox_id} {note}",
        )
        if won:
            # A provisioning session never ran (provisioning comes only from queued), so
            # this is its first interval.
            open_interval(session, started, first=True)
    return won


def confirm_handle(session: Session, handle: SandboxHandle) -> None:
    """After ``record_handle`` of a handle the provider made from what it knew of the
    template (``handle.confirm``): ask it about this sandbox and correct what differs, the
    sizes while the session still runs it, the start of the interval opened at the estimate.
    A failed call keeps the estimate (the template's sizes, the time the create was sent)."""
    if handle.confirm is None:
        return
    try:
        exact = handle.confirm()
    except ProviderError as exc:
        log.warning("session %s: sandbox %s unconfirmed: %s", session.pk, handle.sandbox_id, exc)
        return
    sizes = {"template": exact.template[:128], "vcpu": exact.vcpu or None}
    sizes["memory_mb"] = exact.memory_mb or None
    fix = {name: value for name, value in sizes.items() if getattr(session, name) != value}
    if fix and Session.objects.filter(
        pk=session.pk, sandbox_id=handle.sandbox_id, state=S.RUNNING
    ).update(**fix):
        for name, value in fix.items():
            setattr(session, name, value)
    opened = max(handle.started_at, session.created_at)  # what record_handle opened it at
    started = min(timezone.now(), max(exact.started_at, session.created_at))
    if started != opened:
        RunningInterval.objects.filter(
            session_id=session.pk, ended_at__isnull=True, started_at=opened
        ).update(started_at=started)


def mark_lost(session: Session, reason: str, *, at: datetime | None = None) -> bool:
    """The sandbox is gone: ``lost``, with the running interval closed (and billed)."""
    now = at or timezone.now()
    with transaction.atomic():
        won = transition(
            session,
            S.LOST,
            expected=[S.RUNNING, S.PAUSED, S.PAUSING, S.RESUMING],
            note=reason,
            at=now,
            last_error=reason,
        )
        if won:
            close_open_interval(session, now, "lost")
    if won:
        audit(session, "session.lost", sandbox=session.sandbox_id, reason=reason)
        free_slot(session)
    return won


def mark_paused(session: Session, note: str, expected: list[str]) -> bool:
    """→ paused, closing the running interval (paused time costs nothing)."""
    now = timezone.now()
    with transaction.atomic():
        won = transition(session, S.PAUSED, expected=expected, note=note, at=now, last_error="")
        if won:
            close_open_interval(session, now, "pause")
    if won:
        audit(session, "session.paused", sandbox=session.sandbox_id, note=note)
        free_slot(session)
    return won


def mark_running(
    session: Session, note: str, expected: list[str], sandbox_id: str | None = None
) -> bool:
    """→ running, opening a running interval."""
    now = timezone.now()
    values: dict[str, Any] = {"last_error": ""}
    if sandbox_id:
        values["sandbox_id"] = sandbox_id
    with transaction.atomic():
        won = transition(session, S.RUNNING, expected=expected, note=note, at=now, **values)
        if won:
            open_interval(session, now)
    if won:
        audit(session, "session.resumed", sandbox=session.sandbox_id, note=note)
    return won


def mark_terminated(session: Session) -> bool:
    """terminating → terminated, closing the running interval (if one was open)."""
    now = timezone.now()
    with transaction.atomic():
        won = transition(
            session,
            S.TERMINATED,
            expected=[S.TERMINATING],
            at=now,
            note="terminated",
            last_error="",
        )
        if won:
            close_open_interval(session, now, "terminate")
    if won:
        audit(session, "session.terminated", sandbox=session.sandbox_id)
        free_slot(session)
    return won
