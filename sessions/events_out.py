"""Session events: what each state change tells the outside world (the outbox writer).

Registered on ``sessions.state.observers`` when the app is ready, so it runs inside the
transaction of every state change (and of ``record_created``), whoever makes it: pages,
the API, jobs, the reconciler, policies. The payload is the session as the API shows it
(``sessions.api.session_json``), written with ``events.outbox.emit`` (one INSERT).

    queued      ← created                            session.created
    queued      ← provisioning, or waits for a slot  session.queued (with the reason)
    running     ← provisioning                       session.running
    paused      ← running or pausing                 session.paused
    running     ← paused or resuming                 session.resumed
    terminated, failed, lost                         session.ended (with the outcome)

Moves between the in-between states (pausing, resuming, a failed pause back to running, a
retried step) say nothing: the session's public state did not change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events import types as t
from events.outbox import emit
from sessions.api import run_json, session_json
from sessions.costs import cost_so_far
from sessions.models import TERMINAL_STATES, CommandRun, PolicyAction, Session, SessionState
from sessions.outcomes import outcome_for
from sessions.queue import QueueStatus
from sessions.state import observers

S = SessionState
NEVER_RAN = frozenset({"", S.QUEUED, S.PROVISIONING})


def event_type(from_state: str, to: str) -> str | None:
    """The event a move from ``from_state`` to ``to`` sends, if any."""
    if from_state == "":
        return t.SESSION_CREATED
    if to == S.QUEUED:
        return t.SESSION_QUEUED
    if to in TERMINAL_STATES:
        return t.SESSION_ENDED
    if to == S.RUNNING and from_state == S.PROVISIONING:
        return t.SESSION_RUNNING
    if to == S.RUNNING and from_state in (S.PAUSED, S.RESUMING):
        return t.SESSION_RESUMED
    if to == S.PAUSED and from_state in (S.RUNNING, S.PAUSING):
        return t.SESSION_PAUSED
    return None


def on_change(session: Session, from_state: str, to: str, note: str, at: datetime) -> None:
    kind = event_type(from_state, to)
    if kind is None:
        return
    # A session moving from these never ran: nothing billed, nothing open, no query.
    costs = cost_so_far([session], at, never_ran={session.pk}) if from_state in NEVER_RAN else None
    # The creation says what was asked; why a session waits, and its place in line, comes
    # with session.queued (dispatch decides that in the same transaction).
    queue: dict[int, QueueStatus] | None = {} if kind == t.SESSION_CREATED else None
    data: dict[str, Any] = {"session": session_json(session, queue, costs)}
    if kind == t.SESSION_QUEUED:
        data["reason"] = note
    if kind == t.SESSION_ENDED:
        by_policy = (
            to == S.TERMINATED
            and PolicyAction.objects.filter(session_id=session.pk, action="terminate").exists()
        )
        data["outcome"] = outcome_for(
            to,
            from_state=from_state,
            started=session.started_at is not None,
            by_policy=by_policy,
        )
        data["reason"] = session.last_error or note
    emit(session.org_id, kind, data, session_id=session.pk, at=at)


def exec_finished(run: CommandRun, org_id: int) -> None:
    """A command run ended (done or error): call in the transaction that records it."""
    emit(
        org_id,
        t.SESSION_EXEC_FINISHED,
        {"session_id": run.session_id, "run": run_json(run)},
        session_id=run.session_id,
    )


def connect() -> None:
    if on_change not in observers:
        observers.append(on_change)
