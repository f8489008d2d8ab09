"""Why a session waits and where it is in line, for the session page and the API.

    queue_status(session) -> QueueStatus | None

A session waits in two ways: ``queued`` (every pool that could run it is at its cap) or
``paused`` with a resume in line (its pool is at its cap, ``resume_requested_at``). Both
wait in one line per pool, oldest request first: when a slot frees, ``dispatch_waiting``
offers it in that order (``sessions.dispatch``). The position counts the requests ahead
that the same freed slot is offered to first: resumes waiting on the same pools, and the
org's queued sessions that may use them (not pinned to another pool). A queued session
ahead that the pool cannot run (other kinds) is offered the slot and passes, so in an org
with several pools the position is an upper bound.

Bounded: three queries (the pools, their slots in use, one count for the position), and
the same three for a whole page of sessions (``queue_statuses``); none when nobody waits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q

from pools.models import CapacityPool
from sessions.dispatch import cap_reason, slots_in_use
from sessions.models import Session, SessionState

S = SessionState
START = "start"
RESUME = "resume"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st…"""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class QueueStatus:
    kind: str  # START (queued) or RESUME (paused, resume in line)
    reason: str  # "demo-e2b is at its cap (4/4)"
    position: int  # 1: the next freed slot is offered to this session first
    waiting_for: list[str]
    since: datetime

    @property
    def line(self) -> str:
        """``demo-e2b is at its cap (4/4); 2nd in line``."""
        return f"{self.reason}; {ordinal(self.position)} in line"

    @property
    def text(self) -> str:
        """``line``, and a resume says so first: ``Resume requested: …``."""
        return f"Resume requested: {self.line}" if self.kind == RESUME else self.line

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "position": self.position,
            "waiting_for": list(self.waiting_for),
            "since": self.since,
            "text": self.text,
        }


def _in_line(session: Session) -> tuple[str, datetime, list[str]] | None:
    """(kind, since, pools waited for) when ``session`` waits; no queries."""
    if session.state == S.QUEUED:
        routing = session.routing if isinstance(session.routing, dict) else {}
        names = [str(n) for n in routing.get("waiting_for") or []]
        return START, session.created_at, names
    if session.state == S.PAUSED and session.resume_requested_at is not None:
        pool = session.pool
        return (RESUME, session.resume_requested_at, [pool.name]) if pool is not None else None
    return None


def _reason(
    names: list[str],
    pools: dict[tuple[int, str], CapacityPool],
    org_id: int,
    in_use: dict[int, int],
) -> str:
    if not names:
        return "waiting to be dispatched"
    parts = []
    for name in names:
        pool = pools.get((org_id, name))
        if pool is None:
            parts.append(f"waiting for {name}")
            continue
        used = in_use.get(pool.pk, 0)
        full = cap_reason(pool, used)
        if full:
            parts.append(f"{name} is {full}")
        else:  # freed since the last dispatch; the next dispatch offers it in line
            parts.append(f"waiting for a slot in {name} ({used}/{pool.concurrency_cap})")
    return "; ".join(parts)


def _budget_reason(session: Session) -> str:
    """A queued session a budget holds back says so first (``sessions.admission``)."""
    routing = session.routing if isinstance(session.routing, dict) else {}
    budget = routing.get("budget") if session.state == S.QUEUED else None
    return str(budget) if budget else ""


def _ahead(session: Session, since: datetime, names: list[str]) -> Q:
    """The waiting requests a freed slot is offered to before ``session``."""

    def before(field: str) -> Q:
        return Q(**{f"{field}__lt": since}) | Q(**{field: since, "pk__lt": session.pk})

    if not names:  # not routed yet: the org's queue as a whole
        return Q(org_id=session.org_id, state=S.QUEUED) & before("created_at")
    queued = Q(state=S.QUEUED, requested_pool__in=["", *names]) & before("created_at")
    resumes = Q(state=S.PAUSED, resume_requested_at__isnull=False, pool__name__in=names) & before(
        "resume_requested_at"
    )
    return Q(org_id=session.org_id) & (queued | resumes)


def queue_statuses(sessions: Iterable[Session]) -> dict[int, QueueStatus]:
    """``queue_status`` of many sessions (a list page) in three queries, however many."""
    waiting = {s.pk: (s, line) for s in sessions if (line := _in_line(s)) is not None}
    if not waiting:
        return {}
    orgs = {s.org_id for s, _ in waiting.values()}
    names = {name for _, (_, _, wanted) in waiting.values() for name in wanted}
    pools = {
        (p.org_id, p.name): p for p in CapacityPool.objects.filter(org_id__in=orgs, name__in=names)
    }
    in_use = slots_in_use([p.pk for p in pools.values()])
    # One count per session, all in one query: filtered aggregates.
    ahead = Session.objects.filter(org_id__in=orgs).aggregate(
        **{
            f"s{pk}": Count("id", filter=_ahead(s, since, wanted))
            for pk, (s, (_, since, wanted)) in waiting.items()
        }
    )
    return {
        pk: QueueStatus(
            kind,
            _budget_reason(s) or _reason(wanted, pools, s.org_id, in_use),
            int(ahead[f"s{pk}"] or 0) + 1,
            wanted,
            since,
        )
        for pk, (s, (kind, since, wanted)) in waiting.items()
    }


def queue_status(session: Session) -> QueueStatus | None:
    """Why ``session`` waits and its place in line; None when it is not waiting."""
    return queue_statuses([session]).get(session.pk)
