"""Dashboard and session pages: dashboard, list (with bulk terminate), new session.

The session page itself is ``sessions.views_detail`` (status, timeline, actions) and its
exec console ``sessions.views_exec``. Every view starts with the access helper:
``sessions.view`` to look, ``sessions.manage`` to act. State changes go through
``sessions.services`` (which audits and enqueues the jobs); these views only read, validate
and render.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from pools.models import CapacityPool
from rensei.access import membership_of, org_of, org_view
from rensei.credentials import environment_secret
from rensei.inputs import MAX_ID
from rensei.models import Channel, Credential
from rensei.paging import CappedPaginator
from sessions import services
from sessions.costs import cost_so_far, cost_summary
from sessions.dashboard_panels import render_panels
from sessions.forms import SINCE_HOURS, SORTS, STATE_RANK, NewSessionForm, SessionFilterForm
from sessions.models import TERMINAL_STATES, Session
from sessions.templatetags.sessions_extras import duration, utc
from sessions.view_helpers import HtmxHttpRequest, can_manage, detail_urls, sessions_of

PAGE_SIZE = 25
# The list counts this many sessions past the page's first, not the org's whole history.
COUNT_CAP = 1000
RECENT = 8
# Engine field names → this page's form fields.
NEW_FIELDS = {"issue_key": "issue_key", "issue_title": "issue_title", "pool": "pool"}


# --- dashboard -----------------------------------------------------------------------------


@org_view()
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    org = org_of(request)
    membership = membership_of(request)
    recent = list(sessions_of(request).order_by("-created_at", "-id")[:RECENT])
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
    # Each recent session's cost so far (ledger + its open interval priced now), in three
    # queries for the whole table, for people who see cost; the region's poll keeps it live.
    show_cost = membership.can("billing.view")
    so_far = cost_so_far(recent, timezone.now()) if show_cost and recent else {}
    context["show_cost"] = show_cost
    detail_url = detail_urls()
    context["recent_rows"] = [
        _row(s, so_far.get(s.pk), detail_url)
        | {"pool_name": (s.pool.name if s.pool else "") or "—", "created": utc(s.created_at)}
        for s in recent
    ]
    # Panels higher apps hand down (budgets' spend panel), in the polled region too.
    context["panels"] = render_panels(request)
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


# The CPU column shows the sample the platform last stored on the session (the minute job of
# sessions/cpu_samples.py, the session page's metrics partial, the idle policy's pass): no
# provider call per row. Older than this, a figure would mislead, so the cell says "—".
CPU_FRESH = timedelta(minutes=3)


def _cpu(session: Session, now: datetime) -> float | None:
    at = session.last_metrics_at
    if session.state != "running" or at is None or now - at > CPU_FRESH:
        return None
    return session.last_cpu_pct


def _run_seconds(session: Session, now: datetime) -> float | None:
    """Since the sandbox started, to its end (an ended row without ``ended_at`` ended at its
    last state change) or now; None before it started."""
    if session.started_at is None:
        return None
    end = session.ended_at or (
        session.state_changed_at if session.state in TERMINAL_STATES else now
    )
    return (end - session.started_at).total_seconds()


def _row(
    session: Session, cost: Decimal | None, detail_url: Callable[[int], str]
) -> dict[str, Any]:
    """What a table row of sessions (the list, the dashboard's recent ones) shows of every
    session, made once in the view so the template only looks it up."""
    return {
        "pk": str(session.pk),
        "url": detail_url(session.pk),
        "issue_key": session.issue.key if session.issue else None,
        "state": session.state,
        "state_label": session.get_state_display(),
        "cost": cost,  # None when the viewer may not see cost
    }


def _list_row(
    session: Session, now: datetime, cost: Decimal | None, detail_url: Callable[[int], str]
) -> dict[str, Any]:
    """One row of the list as the table shows it: every text, time and link made here once
    (times as the template's ``date`` filter wrote them, in the current time zone: UTC)."""
    issue, pool = session.issue, session.pool
    created = timezone.localtime(session.created_at)
    cpu = _cpu(session, now)
    return _row(session, cost, detail_url) | {
        "terminable": "terminate" in services.allowed_actions(session),
        "issue_title": issue.title if issue else "",
        "issue_tooltip": (f"{issue.key}: {issue.title}" if issue.title else issue.key)
        if issue
        else "",
        "pool_name": pool.name if pool else None,
        "sandbox_id": session.sandbox_id,
        "duration": duration(_run_seconds(session, now)),
        "cpu": None if cpu is None else floatformat(cpu, 1),
        "cpu_at": _local(session.last_metrics_at, "%H:%M:%S") if cpu is not None else "",
        "created": created.strftime("%Y-%m-%d %H:%M"),
        "created_seconds": created.strftime("%Y-%m-%d %H:%M:%S"),
        "created_iso": created.isoformat(),
        "state_since": _local(session.state_changed_at, "%Y-%m-%d %H:%M:%S"),
        "in_state": duration((now - session.state_changed_at).total_seconds()),
    }


def _local(value: datetime | None, fmt: str) -> str:
    return timezone.localtime(value).strftime(fmt) if value is not None else ""


@org_view("sessions.view")
def session_list(request: HtmxHttpRequest) -> HttpResponse:
    org = org_of(request)
    now = timezone.now()
    form = SessionFilterForm(request.GET, org=org)
    sessions = sessions_of(request).annotate(state_rank=STATE_RANK)
    if states := form.states():
        sessions = sessions.filter(state__in=states)
    if pool := form.valid("pool"):
        sessions = sessions.filter(pool=pool)
    if issue := form.valid("issue"):
        sessions = sessions.filter(issue__key__icontains=issue.strip())
    if since := form.valid("since"):
        sessions = sessions.filter(state_changed_at__gte=now - timedelta(hours=SINCE_HOURS[since]))
    sort = form.valid("sort") or "-created"
    # Counted up to COUNT_CAP rows past the page, not all of them: the count of an org's
    # whole history would cost more than the page (rensei/paging.py).
    paginator = CappedPaginator(sessions.order_by(*SORTS[sort]), PAGE_SIZE, COUNT_CAP)
    page = paginator.get_page(request.GET.get("page"))
    shown = list(page.object_list)
    show_cost = membership_of(request).can("billing.view")
    # One pass for the whole page (three queries), never a query per row.
    costs = cost_so_far(shown, now) if show_cost else {}
    detail_url = detail_urls()
    rows = [_list_row(s, now, costs.get(s.pk), detail_url) for s in shown]
    context = {
        "form": form,
        "page": page,
        "rows": rows,
        "any_terminable": any(row["terminable"] for row in rows),
        "sort": sort,
        "show_cost": show_cost,
        "list_query": _list_query(request.META.get("QUERY_STRING", "")),
        "filtered": any(form.valid(name) for name in ("state", "pool", "issue", "since")),
        "can_manage": can_manage(request),
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
    sessions = list(sessions_of(request).filter(pk__in=ids).order_by("-created_at", "-id"))
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
