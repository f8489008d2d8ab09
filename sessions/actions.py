"""Asking a session to change: pause, resume, terminate, and what may be asked now.

Each request is a state-machine move (``running → pausing``…), an audit row and the job,
sent when the transaction commits (``sessions.enqueue``). ``sessions.services`` re-exports
these for pages, the API and commands.

    allowed_actions(session) -> set[str]          # {"pause", "resume", "terminate", "exec"}
    request_pause(session, actor, channel) -> bool
    request_resume(session, actor, channel) -> bool
    request_terminate(session, actor, channel) -> bool
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from pools.providers import provider_class
from rensei.audit import actor_label, record
from rensei.models import Channel
from sessions import enqueue
from sessions.audit import describe
from sessions.dispatch import NOOP, WAITING, dispatch_waiting, resume_or_wait
from sessions.models import LIVE_STATES, Session, SessionState
from sessions.state import transition

S = SessionState


def allowed_actions(session: Session) -> set[str]:
    """What the UI/API may offer now, from the state and the provider's capabilities."""
    state = session.state
    if state not in LIVE_STATES or state == S.TERMINATING:
        return set()
    actions = {"terminate"}
    caps = None
    if session.provider:
        try:
            caps = provider_class(session.provider).capabilities
        except LookupError:
            caps = None
    if state == S.RUNNING and caps is not None:
        if caps.supports_pause_resume:
            actions.add("pause")
        if caps.supports_exec:
            actions.add("exec")
    if state == S.PAUSED and caps is not None and caps.supports_pause_resume:
        actions.add("resume")
    return actions


def _request(
    session: Session,
    *,
    action: str,
    to: str,
    expected: list[str],
    actor: Any,
    channel: str,
    reason: str = "",
) -> bool:
    if action not in allowed_actions(session):
        # The in-memory row may be stale; the conditional update below is the real check,
        # but an action the provider cannot do is refused here.
        session.refresh_from_db(fields=["state", "provider"])
        if action not in allowed_actions(session):
            return False
    label = actor_label(actor, channel)  # "API token <name>" for API calls
    with transaction.atomic():
        # A reason (a pool's lifecycle policy) goes on the timeline the session page shows.
        note = f"{action} requested by {label}" + (f": {reason}" if reason else "")
        if not transition(session, to, expected=expected, note=note):
            return False
        record(
            org=session.org,
            action=f"session.{action}_requested",
            target=describe(session),
            actor=actor,
            channel=channel,
            detail={"reason": reason} if reason else None,
        )
        job = {"pause": enqueue.PAUSE, "resume": enqueue.RESUME, "terminate": enqueue.TERMINATE}
        enqueue.send(job[action], session.pk)
    return True


def request_pause(
    session: Session, actor: Any = None, channel: str = Channel.WEB, reason: str = ""
) -> bool:
    """running → pausing, then the pause job. False when the state did not allow it."""
    return _request(
        session,
        action="pause",
        to=S.PAUSING,
        expected=[S.RUNNING],
        actor=actor,
        channel=channel,
        reason=reason,
    )


def request_resume(session: Session, actor: Any = None, channel: str = Channel.WEB) -> bool:
    """paused → resuming, then the resume job; False when the state did not allow it.

    A resume takes a slot under the pool's soft cap like a new session: at the cap the
    session stays ``paused`` with the resume in line (``resume_requested_at``; the page and
    the API say why and where in line) and resumes by itself when a slot frees. Asking
    again while in line keeps the place and returns True.
    """
    if "resume" not in allowed_actions(session):
        session.refresh_from_db(fields=["state", "provider"])
        if "resume" not in allowed_actions(session):
            return False
    label = actor_label(actor, channel)  # "API token <name>" for API calls
    with transaction.atomic():
        outcome = resume_or_wait(session, note=f"resume requested by {label}")
        if outcome == NOOP:
            return False
        pool = session.pool
        detail = {"waiting_for_slot": pool.name} if outcome == WAITING and pool else {}
        record(
            org=session.org,
            action="session.resume_requested",
            target=describe(session),
            actor=actor,
            channel=channel,
            detail=detail or None,
        )
        if outcome == WAITING and pool is not None:
            # A slot that freed while this request counted (a job committing in between,
            # which looked for waiting requests before this one was visible) is offered again
            # once the request is: in line, oldest first.
            transaction.on_commit(lambda: dispatch_waiting(pool))
    return True


def request_terminate(
    session: Session, actor: Any = None, channel: str = Channel.WEB, reason: str = ""
) -> bool:
    """Any live state → terminating, then the terminate job (which also stops in-flight
    provisioning). False when already terminating or ended."""
    expected = sorted(LIVE_STATES - {S.TERMINATING})
    return _request(
        session,
        action="terminate",
        to=S.TERMINATING,
        expected=expected,
        actor=actor,
        channel=channel,
        reason=reason,
    )
