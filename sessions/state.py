"""The session state machine: every change is a conditional UPDATE plus a timeline row.

    queued → provisioning → running ⇄ (pausing → paused → resuming) → terminating → terminated
    failed (could not provision) and lost (the sandbox vanished) are terminal too.

``transition`` runs ``UPDATE … WHERE pk = … AND state IN (expected)`` and checks the row
count, so when two workers (or twenty browser tabs) race, exactly one wins and the others
get ``False``: a no-op, never an error. The winner writes the ``SessionTransition`` row in
the same transaction, so the timeline never disagrees with the state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from sessions.models import TERMINAL_STATES, Session, SessionState, SessionTransition

S = SessionState

# Which states each state may move to. The machine refuses anything else (a bug, not a race).
ALLOWED: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.PROVISIONING, S.TERMINATING, S.FAILED}),
    S.PROVISIONING: frozenset({S.RUNNING, S.QUEUED, S.TERMINATING, S.FAILED, S.PROVISIONING}),
    S.RUNNING: frozenset({S.PAUSING, S.PAUSED, S.TERMINATING, S.LOST}),
    S.PAUSING: frozenset({S.PAUSED, S.RUNNING, S.TERMINATING, S.LOST, S.PAUSING}),
    S.PAUSED: frozenset({S.RESUMING, S.RUNNING, S.TERMINATING, S.LOST}),
    S.RESUMING: frozenset({S.RUNNING, S.PAUSED, S.TERMINATING, S.LOST, S.RESUMING}),
    S.TERMINATING: frozenset({S.TERMINATED, S.TERMINATING}),
    S.TERMINATED: frozenset(),
    S.FAILED: frozenset(),
    S.LOST: frozenset(),
}

# The states in which a session holds a slot under its pool's soft cap: a sandbox exists
# (or may exist) and may run. Paused sandboxes do not: E2B does not count them toward
# concurrency and they cost nothing. Queued sessions have no sandbox yet. "Live" for the
# cap is ``sessions.dispatch.holding_slots`` (these states, less a paused or queued session
# on its way to terminated); dispatch and resume both count it, and the pool form's cap
# help text says the same.
SLOT_STATES = frozenset({S.PROVISIONING, S.RUNNING, S.PAUSING, S.RESUMING, S.TERMINATING})
# A job is in flight for these; the reconciler re-enqueues it when it takes too long.
TRANSITIONAL_STATES = frozenset({S.PROVISIONING, S.PAUSING, S.RESUMING, S.TERMINATING})


# Called inside the transaction of every state change, the session already carrying what
# was written: (session, from_state, to_state, note, at). The outbox writer
# (sessions.events_out, registered when the app is ready) turns them into events, so every
# change, whoever makes it, passes the one choke point; "" → queued is the creation.
Observer = Callable[[Session, str, str, str, datetime], None]
observers: list[Observer] = []


def _notify(session: Session, from_state: str, to: str, note: str, at: datetime) -> None:
    for observer in observers:
        observer(session, from_state, to, note, at)


class IllegalTransition(ValueError):
    """A caller asked for a move the machine does not have (a programming error)."""


def transition(
    session: Session,
    to: str,
    *,
    expected: Iterable[str],
    note: str = "",
    at: datetime | None = None,
    **fields: Any,
) -> bool:
    """Move ``session`` to ``to`` if its state is one of ``expected``; False if it was not.

    ``fields`` are other columns written by the same UPDATE (e.g. ``sandbox_id``). On success
    the in-memory ``session`` carries what was written.
    """
    return transition_where(session, to, expected=expected, note=note, at=at, values=fields)


def transition_where(
    session: Session,
    to: str,
    *,
    expected: Iterable[str],
    where: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    note: str = "",
    at: datetime | None = None,
) -> bool:
    """``transition`` with extra WHERE conditions (e.g. ``{"sandbox_id": ""}``)."""
    expected = frozenset(expected)
    for state in expected:
        if to not in ALLOWED[state]:
            raise IllegalTransition(f"{state} → {to} is not a session transition")
    now = at or timezone.now()
    updates: dict[str, Any] = {"state": to, "state_changed_at": now, **(values or {})}
    # A resume waiting for a slot belongs to the paused state it was asked in: any move
    # (resuming, terminated, lost, resumed outside the platform) ends the wait.
    updates.setdefault("resume_requested_at", None)
    if to == S.RUNNING and session.started_at is None:
        updates.setdefault("started_at", now)
    if to in TERMINAL_STATES:
        updates.setdefault("ended_at", now)
    # savepoint=False: inside a caller's transaction (create, dispatch, a lifecycle step)
    # a failure here fails the caller's whole transaction anyway, so a savepoint would only
    # cost two more round trips.
    with transaction.atomic(savepoint=False):
        current = _conditional_update(session, expected, where or {}, updates)
        if current is None:
            return False
        SessionTransition.objects.create(
            session_id=session.pk, from_state=current, to_state=to, note=note[:2000]
        )
        for name, value in updates.items():
            setattr(session, name, value)
        _notify(session, current, to, note, now)
    return True


def _conditional_update(
    session: Session, expected: frozenset[str], where: dict[str, Any], updates: dict[str, Any]
) -> str | None:
    """The UPDATE that decides the race; returns the state it moved from (None: lost).

    The timeline needs the state the row left, so the UPDATE names one: first the state the
    caller holds in memory (nearly always still the row's), with no read before it; only
    when that misses does it read the row's state under the same conditions and try that.
    """
    held = session.state
    if held in expected and Session.objects.filter(pk=session.pk, state=held, **where).update(
        **updates
    ):
        return str(held)
    current = (
        Session.objects.filter(pk=session.pk, state__in=expected, **where)
        .values_list("state", flat=True)
        .first()
    )
    if current is None:
        return None
    won = Session.objects.filter(pk=session.pk, state=current, **where).update(**updates)
    return current if won else None


def record_created(session: Session, note: str = "") -> None:
    """The first timeline row: the session exists, ``queued``."""
    with transaction.atomic(savepoint=False):
        row = SessionTransition.objects.create(
            session=session, from_state="", to_state=session.state, note=note
        )
        _notify(session, "", session.state, note, row.at)


def record_created_moved(session: Session, *, created_note: str, note: str) -> None:
    """A new session saved straight in the state dispatch gave it before the INSERT (a pool
    took it at once): both timeline rows, "" → queued and queued → its state, in one INSERT,
    and the observers told of both moves, the first with the session as it was created
    (queued, no pool yet), so the outside sees what ``record_created`` + ``transition``
    would have shown."""
    now = session.state_changed_at
    with transaction.atomic(savepoint=False):
        SessionTransition.objects.bulk_create(
            [
                SessionTransition(
                    session_id=session.pk, from_state="", to_state=S.QUEUED, note=created_note
                ),
                SessionTransition(
                    session_id=session.pk,
                    from_state=S.QUEUED,
                    to_state=session.state,
                    note=note[:2000],
                ),
            ]
        )
        moved = {name: getattr(session, name) for name in ("state", "pool", "provider", "routing")}
        session.state, session.pool, session.provider, session.routing = S.QUEUED, None, "", {}
        try:
            _notify(session, "", S.QUEUED, created_note, now)
        finally:
            for name, value in moved.items():
                setattr(session, name, value)
        _notify(session, S.QUEUED, session.state, note, now)


def record_waiting(session: Session, note: str) -> None:
    """A queued session waits for a slot (no state change; dispatch found only full pools)."""
    _notify(session, session.state, session.state, note, timezone.now())
