"""How a session ended, in the words Rensei's platform uses (``session.ended``'s ``outcome``).

    outcome_of(session) -> str | None      # None while the session is live
    outcome_for(state, from_state=…, started=…, by_policy=…) -> str | None
    outcome_expression() -> a query expression, for counting or pricing many sessions

The map (docs/events.md has the same table):

    ended state  how it got there                                   outcome
    terminated   asked to terminate before it ever ran               cancelled
    terminated   a pool's lifecycle policy (paused too long, age)    expired
    terminated   asked by a person or an API token after it ran      terminated
    failed       could not be provisioned (permanent error, gave up) failed
    lost         the sandbox vanished while it ran                   lost
    lost         the sandbox vanished while paused, pausing, resuming interrupted

``succeeded`` is in the vocabulary but the control plane never says it: only the agent in the
box knows whether its work succeeded, and it reports that to Rensei's platform itself.
"""

from __future__ import annotations

from django.db.models import Case, CharField, Exists, OuterRef, Q, Value, When
from django.db.models.expressions import Expression

from sessions.models import PolicyAction, Session, SessionState, SessionTransition

S = SessionState

SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"
EXPIRED = "expired"
TERMINATED = "terminated"
LOST = "lost"
OUTCOMES = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED, EXPIRED, TERMINATED, LOST)
# States in which the sandbox was not running when it vanished: the work was interrupted.
NOT_RUNNING = frozenset({S.PAUSED, S.PAUSING, S.RESUMING})


def outcome_for(
    state: str, *, from_state: str = "", started: bool = True, by_policy: bool = False
) -> str | None:
    """The outcome of an ended session from what is known at the moment it ended."""
    if state == S.FAILED:
        return FAILED
    if state == S.LOST:
        return INTERRUPTED if from_state in NOT_RUNNING else LOST
    if state == S.TERMINATED:
        if not started:
            return CANCELLED
        return EXPIRED if by_policy else TERMINATED
    return None


def outcome_of(session: Session) -> str | None:
    """The outcome of ``session`` (None while live); one query for lost or terminated."""
    if session.state == S.LOST:
        before = (
            SessionTransition.objects.filter(session_id=session.pk, to_state=S.LOST)
            .values_list("from_state", flat=True)
            .last()
        )
        return outcome_for(S.LOST, from_state=before or "")
    if session.state == S.TERMINATED:
        if session.started_at is None:
            return CANCELLED
        by_policy = PolicyAction.objects.filter(session_id=session.pk, action="terminate").exists()
        return outcome_for(S.TERMINATED, by_policy=by_policy)
    return outcome_for(session.state)


def outcome_expression() -> Expression:
    """``Session.objects.annotate(outcome=outcome_expression())``: the same map in SQL."""
    lost_from = SessionTransition.objects.filter(
        session_id=OuterRef("pk"), to_state=S.LOST
    ).order_by("-at", "-id")
    by_policy = PolicyAction.objects.filter(session_id=OuterRef("pk"), action="terminate")
    return Case(
        When(state=S.FAILED, then=Value(FAILED)),
        When(
            Q(state=S.LOST)
            & Q(Exists(lost_from.filter(from_state__in=sorted(NOT_RUNNING)).values("id")[:1])),
            then=Value(INTERRUPTED),
        ),
        When(state=S.LOST, then=Value(LOST)),
        When(state=S.TERMINATED, started_at__isnull=True, then=Value(CANCELLED)),
        When(Q(state=S.TERMINATED) & Q(Exists(by_policy)), then=Value(EXPIRED)),
        When(state=S.TERMINATED, then=Value(TERMINATED)),
        default=Value(None),
        output_field=CharField(),
    )


__all__ = ["OUTCOMES", "outcome_expression", "outcome_for", "outcome_of"]
