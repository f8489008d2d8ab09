"""The session page: status (badge, actions, timers, timeline), cost, and the exec console's
place on it (the console's own views are ``sessions.views_exec``).

The status area polls itself until nothing on it can change, and an action answers with the
same area, so the page follows state changes from the API, other tabs, jobs and the
reconciler as well as from its own buttons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from rensei.access import membership_of, org_view
from rensei.models import Channel
from sessions import services
from sessions.costs import session_cost
from sessions.forms import ExecForm
from sessions.models import (
    TERMINAL_STATES,
    RunningInterval,
    Session,
    SessionState,
    SessionTransition,
)
from sessions.state import TRANSITIONAL_STATES
from sessions.view_helpers import HtmxHttpRequest, session_or_404

PAST_RUNS = 20
# "updating…" beside the badge while a job is moving the session (queued waits for a slot).
MOVING_STATES = TRANSITIONAL_STATES | {SessionState.QUEUED}
ACTIONS = {
    "pause": (services.request_pause, "Pausing", "paused"),
    "resume": (services.request_resume, "Resuming", "resumed"),
    "terminate": (services.request_terminate, "Terminating", "terminated"),
}


@dataclass
class TimelineEntry:
    transition: SessionTransition
    seconds: float | None  # how long the session stayed in ``to_state``
    ongoing: bool


def _timeline(session: Session, now: datetime) -> list[TimelineEntry]:
    rows = list(session.transitions.all())
    out = []
    for i, row in enumerate(rows):
        if i + 1 < len(rows):
            end, ongoing = rows[i + 1].at, False
        elif row.to_state in TERMINAL_STATES:
            end, ongoing = None, False
        else:
            end, ongoing = now, True
        seconds = (end - row.at).total_seconds() if end is not None else None
        out.append(TimelineEntry(row, seconds, ongoing))
    return out


def _time_split(
    session: Session, intervals: list[RunningInterval], now: datetime
) -> dict[str, Any]:
    """Running seconds (billed) and paused seconds: the rest of the time since the sandbox
    first ran, up to now (or the end, for a session that has ended)."""
    if not intervals:
        return {"running": 0.0, "paused": 0.0}
    running = sum(((iv.ended_at or now) - iv.started_at).total_seconds() for iv in intervals)
    end = now
    if session.state in TERMINAL_STATES:
        end = session.ended_at or session.state_changed_at
        end = max([end, *(iv.ended_at for iv in intervals if iv.ended_at is not None)])
    span = (end - intervals[0].started_at).total_seconds()
    return {"running": running, "paused": max(0.0, span - running)}


def _is_final(session: Session, intervals: list[RunningInterval]) -> bool:
    """Nothing the session page shows can change any more: the session has ended and no
    running interval is open (closing one writes its ledger row in the same transaction)."""
    return session.state in TERMINAL_STATES and all(iv.ended_at is not None for iv in intervals)


def _status_context(request: HtmxHttpRequest, session: Session, **extra: Any) -> dict[str, Any]:
    now = timezone.now()
    membership = membership_of(request)
    can_manage = membership.can("sessions.manage")
    intervals = list(session.intervals.all())
    running_now = any(iv.ended_at is None for iv in intervals)
    context = {
        "session": session,
        "timeline": _timeline(session, now),
        "times": _time_split(session, intervals, now),
        # Which counters the page advances by itself between polls (static/js/app.js).
        "ticking": {
            "running": running_now,
            "paused": bool(intervals) and not running_now and session.state not in TERMINAL_STATES,
        },
        "intervals": intervals,
        "routing": session.routing if isinstance(session.routing, dict) else {},
        "env_names": sorted(session.env or {}),
        "actions": services.allowed_actions(session) if can_manage else set(),
        "can_manage": can_manage,
        "moving": session.state in MOVING_STATES,
        # The page polls until nothing on it can change: state changes come from the API,
        # other tabs, jobs and the reconciler, not only from this page's buttons.
        "live": not _is_final(session, intervals),
        **extra,
    }
    if membership.can("billing.view"):
        context["session_cost"] = session_cost(session, now)
    return context


def _live_context(request: HtmxHttpRequest, session: Session, **extra: Any) -> dict[str, Any]:
    """The status area for a poll or an action, with the regions that follow the same state
    swapped out of band: the cost section always, the exec form only when whether commands
    may run differs from what the page shows (``exec_shown``, sent by the page), so a command
    being typed is never replaced by an identical empty form."""
    context = _status_context(request, session, oob=True, **extra)
    shown = request.POST.get("exec_shown") or request.GET.get("exec_shown")
    if context["can_manage"] and shown in ("0", "1"):
        allowed = "exec" in context["actions"]
        if shown != ("1" if allowed else "0"):
            context.update(exec_gate=True, exec_allowed=allowed, exec_form=ExecForm())
    return context


def exec_context(request: HtmxHttpRequest, session: Session, **extra: Any) -> dict[str, Any]:
    runs = list(session.command_runs.select_related("created_by")[:PAST_RUNS])
    return {
        "session": session,
        "exec_allowed": "exec" in services.allowed_actions(session),
        "exec_form": extra.pop("exec_form", None) or ExecForm(),
        "runs": runs,
        **extra,
    }


def detail_context(request: HtmxHttpRequest, session: Session) -> dict[str, Any]:
    context = _status_context(request, session)
    if context["can_manage"]:
        context.update(exec_context(request, session))
    return context


@org_view("sessions.view")
def session_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    session = session_or_404(request, pk)
    return render(request, "sessions/detail.html", detail_context(request, session))


@org_view("sessions.view")
def session_status(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The polled status area (badge, actions, timers, timeline) with the cost section and,
    when it changes, the exec form out of band; 286 (stop polling) once it is all final."""
    session = session_or_404(request, pk)
    context = _live_context(request, session)
    response = render(request, "sessions/detail.html#status", context)
    if not context["live"]:
        response.status_code = 286
    return response


@org_view("sessions.manage")
@require_POST
def session_action(request: HtmxHttpRequest, pk: int, action: str) -> HttpResponse:
    session = session_or_404(request, pk)
    request_action, doing, done = ACTIONS[action]
    if action not in services.allowed_actions(session):
        ok, text = (
            False,
            f"This session cannot be {done} now: it is {session.get_state_display().lower()}.",
        )
    elif request_action(session, request.user, Channel.WEB):
        ok, text = True, f"{doing} session {session.pk}…"
        if action == "resume" and session.resume_requested_at is not None:
            # At the pool's cap the resume waits in line (the page says why and where).
            text = f"Resume requested: session {session.pk} waits for a slot in its pool."
    else:
        ok, text = False, "Another request changed this session first; nothing was done."
    if request.htmx:
        session.refresh_from_db()
        notice = {"ok": ok, "text": text}
        context = _live_context(request, session, notice=notice)
        return render(request, "sessions/detail.html#status", context)
    (messages.success if ok else messages.error)(request, text)
    return redirect("session_detail", pk=session.pk)
