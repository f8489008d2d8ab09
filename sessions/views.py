"""Dashboard and session pages: list, detail (timeline, actions, exec console), new session.

Every view starts with the access helper: ``sessions.view`` to look, ``sessions.manage`` to
act. State changes go through ``sessions.services`` (which audits and enqueues the jobs);
these views only read, validate and render.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from billing.dashboard import cost_summary, session_cost
from billing.live_cost import cost_so_far
from pools.models import CapacityPool
from rensei.access import get_for_org, membership_of, org_of, org_view
from rensei.credentials import environment_secret
from rensei.models import Channel, Credential
from sessions import services
from sessions.api_input import MAX_ID
from sessions.forms import (
    SINCE_HOURS,
    SORTS,
    STATE_RANK,
    ExecForm,
    NewSessionForm,
    SessionFilterForm,
)
from sessions.models import (
    TERMINAL_STATES,
    CommandRun,
    RunningInterval,
    Session,
    SessionState,
    SessionTransition,
)
from sessions.output import HEAD_BYTES, TAIL_BYTES
from sessions.state import TRANSITIONAL_STATES


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


PAGE_SIZE = 25
RECENT = 8
PAST_RUNS = 20
# "updating…" beside the badge while a job is moving the session (queued waits for a slot).
MOVING_STATES = TRANSITIONAL_STATES | {SessionState.QUEUED}
ACTIONS = {
    "pause": (services.request_pause, "Pausing", "paused"),
    "resume": (services.request_resume, "Resuming", "resumed"),
    "terminate": (services.request_terminate, "Terminating", "terminated"),
}
# Engine field names → this page's form fields.
NEW_FIELDS = {"issue_key": "issue_key", "issue_title": "issue_title", "pool": "pool"}


def _sessions(request: HtmxHttpRequest) -> QuerySet[Session]:
    return Session.objects.filter(org=org_of(request)).select_related("issue", "pool")


def _session(request: HtmxHttpRequest, pk: int) -> Session:
    """The active org's session or 404 (also for ids too large to be a row id)."""
    if pk > MAX_ID:
        raise Http404("No such session.")
    return get_for_org(request, Session.objects.select_related("issue", "pool"), pk=pk)


def _can_manage(request: HtmxHttpRequest) -> bool:
    return membership_of(request).can("sessions.manage")


# --- dashboard -----------------------------------------------------------------------------


@org_view()
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    org = org_of(request)
    membership = membership_of(request)
    recent = list(_sessions(request).order_by("-created_at", "-id")[:RECENT])
    list_url = reverse("session_list")
    counts = services.dashboard_counts(org)
    cards = [
        ("Running", counts["running"], f"{list_url}?state=running"),
        ("Paused", counts["paused"], f"{list_url}?state=paused"),
        (
            "Provisioning / queued",
            counts["starting"],
            f"{list_url}?state=queued&state=provisioning",
        ),
        (
            "Failed (last 24 h)",
            counts["failed_24h"],
            f"{list_url}?state=failed&state=lost&since=24h",
        ),
    ]
    context: dict[str, Any] = {
        "cards": cards,
        "recent": recent,
        "can_manage": membership.can("sessions.manage"),
    }
    if not recent:
        context["setup"] = {
            # The org's key, or the server's E2B_API_KEY fallback.
            "credential": Credential.objects.filter(org=org).exists()
            or bool(environment_secret("e2b")),
            "pool": CapacityPool.objects.filter(org=org).exists(),
            "can_integrations": membership.can("integrations.manage"),
            "can_capacity": membership.can("capacity.manage"),
        }
    if membership.can("billing.view"):
        context["cost"] = cost_summary(org)
    # The page polls itself for its live region (counts, cost, recent sessions).
    template = "sessions/dashboard.html#live" if request.htmx else "sessions/dashboard.html"
    return render(request, template, context)


# --- list ----------------------------------------------------------------------------------


# The list's own query parameters: what a bulk action carries back to the list.
LIST_PARAMS = ("state", "pool", "issue", "since", "sort", "page")


def _list_query(raw: str) -> str:
    """The list's filters from a query string, re-encoded (nothing else survives, so the
    value cannot send anyone elsewhere)."""
    given = QueryDict(raw.lstrip("?"))
    kept = QueryDict(mutable=True)
    for key in LIST_PARAMS:
        values = [v[:100] for v in given.getlist(key)[:20]]
        if values:
            kept.setlist(key, values)
    return kept.urlencode()


def _list_url(query: str) -> str:
    url = reverse("session_list")
    return f"{url}?{query}" if query else url


@dataclass
class ListRow:
    session: Session
    seconds: float | None  # since the sandbox started, to its end or now
    in_state: float  # since the last state change
    cost: Decimal | None  # cost so far; None when the viewer may not see cost
    terminable: bool


def _run_seconds(session: Session, now: datetime) -> float | None:
    """Since the sandbox started, to its end (an ended row without ``ended_at`` ended at its
    last state change) or now; None before it started."""
    if session.started_at is None:
        return None
    end = session.ended_at or (
        session.state_changed_at if session.state in TERMINAL_STATES else now
    )
    return (end - session.started_at).total_seconds()


@org_view("sessions.view")
def session_list(request: HtmxHttpRequest) -> HttpResponse:
    org = org_of(request)
    now = timezone.now()
    form = SessionFilterForm(request.GET, org=org)
    sessions = _sessions(request).annotate(state_rank=STATE_RANK)
    if states := form.states():
        sessions = sessions.filter(state__in=states)
    if pool := form.valid("pool"):
        sessions = sessions.filter(pool=pool)
    if issue := form.valid("issue"):
        sessions = sessions.filter(issue__key__icontains=issue.strip())
    if since := form.valid("since"):
        sessions = sessions.filter(state_changed_at__gte=now - timedelta(hours=SINCE_HOURS[since]))
    sort = form.valid("sort") or "-created"
    page = Paginator(sessions.order_by(*SORTS[sort]), PAGE_SIZE).get_page(request.GET.get("page"))
    shown = list(page.object_list)
    show_cost = membership_of(request).can("billing.view")
    # One pass for the whole page (three queries), never a query per row.
    costs = cost_so_far(shown, now) if show_cost else {}
    rows = [
        ListRow(
            session=s,
            seconds=_run_seconds(s, now),
            in_state=(now - s.state_changed_at).total_seconds(),
            cost=costs.get(s.pk),
            terminable="terminate" in services.allowed_actions(s),
        )
        for s in shown
    ]
    context = {
        "form": form,
        "page": page,
        "rows": rows,
        "any_terminable": any(row.terminable for row in rows),
        "sort": sort,
        "show_cost": show_cost,
        "list_query": _list_query(request.META.get("QUERY_STRING", "")),
        "filtered": any(form.valid(name) for name in ("state", "pool", "issue", "since")),
        "can_manage": _can_manage(request),
        "any_sessions": page.paginator.count > 0 or Session.objects.filter(org=org).exists(),
    }
    template = "sessions/list.html#table" if request.htmx else "sessions/list.html"
    return render(request, template, context)


@org_view("sessions.manage")
@require_POST
def bulk_terminate(request: HtmxHttpRequest) -> HttpResponse:
    """Terminate the ticked sessions, after a confirmation page that says how many; then
    back to the list with the filters it had (``back``, the list's query string)."""
    ids = [int(v) for v in request.POST.getlist("ids") if v.isascii() and v.isdigit()]
    ids = [i for i in ids if i <= MAX_ID][:500]
    sessions = list(_sessions(request).filter(pk__in=ids).order_by("-created_at", "-id"))
    query = _list_query(request.POST.get("back", ""))
    back = _list_url(query)
    if not sessions:
        messages.info(request, "Tick the sessions to terminate first.")
        return redirect(back)
    if request.POST.get("confirm") != "yes":
        context = {"sessions": sessions, "list_query": query, "back": back}
        return render(request, "sessions/bulk_terminate.html", context)
    done = 0
    for session in sessions:
        if services.request_terminate(session, request.user, Channel.WEB):
            done += 1
    skipped = len(sessions) - done
    text = f"Terminating {done} session{'s' if done != 1 else ''}."
    if skipped:
        text += f" {skipped} could not be terminated (already ending or ended)."
    (messages.success if done else messages.warning)(request, text)
    return redirect(back)


# --- detail --------------------------------------------------------------------------------


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


def _exec_context(request: HtmxHttpRequest, session: Session, **extra: Any) -> dict[str, Any]:
    runs = list(session.command_runs.select_related("created_by")[:PAST_RUNS])
    return {
        "session": session,
        "exec_allowed": "exec" in services.allowed_actions(session),
        "exec_form": extra.pop("exec_form", None) or ExecForm(),
        "runs": runs,
        **extra,
    }


def _detail_context(request: HtmxHttpRequest, session: Session) -> dict[str, Any]:
    context = _status_context(request, session)
    if context["can_manage"]:
        context.update(_exec_context(request, session))
    return context


@org_view("sessions.view")
def session_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    session = _session(request, pk)
    return render(request, "sessions/detail.html", _detail_context(request, session))


@org_view("sessions.view")
def session_status(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The polled status area (badge, actions, timers, timeline) with the cost section and,
    when it changes, the exec form out of band; 286 (stop polling) once it is all final."""
    session = _session(request, pk)
    context = _live_context(request, session)
    response = render(request, "sessions/detail.html#status", context)
    if not context["live"]:
        response.status_code = 286
    return response


@org_view("sessions.manage")
@require_POST
def session_action(request: HtmxHttpRequest, pk: int, action: str) -> HttpResponse:
    session = _session(request, pk)
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


# --- exec console --------------------------------------------------------------------------


@org_view("sessions.manage")
@require_POST
def session_exec(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    session = _session(request, pk)
    form = ExecForm(request.POST)
    run = None
    if form.is_valid():
        try:
            run = services.run_command(
                session,
                command=form.cleaned_data["command"],
                env=form.cleaned_data["env"],
                timeout=form.cleaned_data["timeout"],
                actor=request.user,
                channel=Channel.WEB,
            )
        except services.SessionRequestError as exc:
            field = exc.field if exc.field in form.fields else None
            form.add_error(field, exc.message)
    if run is not None:
        if not request.htmx:
            return redirect("session_exec_run", pk=session.pk, run_id=run.pk)
        # A fresh form: the next command starts from the default timeout, not this one's.
        form = ExecForm()
    if run is None and not request.htmx:
        # A plain form post with errors: the whole page again, with the errors beside the form.
        context = _detail_context(request, session)
        context.update(_exec_context(request, session, exec_form=form))
        return render(request, "sessions/detail.html", context, status=400)
    context = _exec_context(request, session, exec_form=form)
    if run is not None:
        context.update(_run_context(run))
    return render(request, "sessions/detail.html#exec_console", context)


def _run_context(run: CommandRun) -> dict[str, Any]:
    # The job stores head and tail capped (sessions.output), while it runs and at the end:
    # shown as stored, partial output included.
    return {
        "run": run,
        "run_finished": run.finished,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "stdout_capped": run.stdout_truncated,
        "stderr_capped": run.stderr_truncated,
        "head_kb": HEAD_BYTES // 1024,
        "tail_kb": TAIL_BYTES // 1024,
    }


@org_view("sessions.manage")
def session_exec_run(request: HtmxHttpRequest, pk: int, run_id: int) -> HttpResponse:
    """One run's output: the polled panel (286 once finished) or a page of its own."""
    session = _session(request, pk)
    if run_id > MAX_ID:
        raise Http404("No such command run.")
    run = get_object_or_404(
        CommandRun.objects.select_related("created_by"), session=session, pk=run_id
    )
    context = {"session": session, **_run_context(run)}
    if request.htmx:
        response = render(request, "sessions/exec_run.html#run_output", context)
        # The "Past runs" list on the detail page listens for these and reloads itself.
        if context["run_finished"]:
            response.status_code = 286
            response["HX-Trigger"] = "runFinished"
        elif request.GET.get("seen", run.state) != run.state:
            response["HX-Trigger"] = "runStarted"  # the panel last showed it queued
        return response
    return render(request, "sessions/exec_run.html", context)


# --- new session ---------------------------------------------------------------------------


@org_view("sessions.manage")
def session_new(request: HtmxHttpRequest) -> HttpResponse:
    org = org_of(request)
    form = NewSessionForm(request.POST or None, org=org)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        pool = data["pool"]
        try:
            session = services.create_session(
                org,
                issue_key=data["issue_key"] or None,
                issue_title=data["issue_title"],
                runtime_kinds=[*data["runtime_kinds"], *data["toolchains"]],
                requirement_kinds=list(data["requirement_kinds"]),
                pool_name=pool.name if pool is not None else None,
                actor=request.user,
                channel=Channel.WEB,
            )
        except services.SessionRequestError as exc:
            field = NEW_FIELDS.get(exc.field or "")
            if field is None and exc.field == "runtime_kinds":
                field = "toolchains"
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            messages.success(
                request, f"Session {session.pk} created: {session.get_state_display()}."
            )
            url = reverse("session_detail", args=[session.pk])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    status = 400 if request.method == "POST" else 200
    return render(request, "sessions/new.html", {"form": form}, status=status)
