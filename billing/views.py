"""Cost per Issue analytics, an issue's cost, and the ledger. Finance and admins only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from billing import charts
from billing.analytics import (
    DEFAULT_SORT,
    SORTS,
    issue_totals,
    ledger_rows,
    rollup_totals,
)
from billing.analytics import cost_per_issue as build_report
from billing.closing import statuses
from billing.exports import COLUMNS, cost_per_issue_csv
from billing.focus import focus_csv
from billing.forms import CostPerIssueForm, LedgerFilterForm, read_filters
from billing.ledger_pages import LedgerPaginator
from billing.live_cost import ledger_sums
from billing.models import CostEvent
from billing.money import format_money
from billing.outcome_costs import outcome_report
from billing.polling import htmx_template, is_poll_of, poll_seconds
from billing.ranking import cost_per_issue_page as build_page
from rensei.access import get_for_org, org_of, org_view
from rensei.links import url_for_each
from rensei.paging import KnownCountPaginator
from sessions.models import Issue, Session

PAGE_SIZE = 50
# Cost per Issue's polled region: its figures, not the filter form or the date fields.
COST_FIGURES = "cost-figures"


def _ledger_page(request: HttpRequest, rows: Any, total: int, param: str = "page") -> Page:
    # The count comes from the totals we show anyway: one query fewer per page. The page's
    # ids first, then only those rows with their joins (billing/ledger_pages.py).
    return LedgerPaginator(rows, PAGE_SIZE, total).get_page(request.GET.get(param))


@org_view("billing.view")
def cost_per_issue(request: HttpRequest) -> HttpResponse:
    org = org_of(request)
    form = CostPerIssueForm(request.GET, org=org)
    filters = read_filters(form)
    sort = filters.values.get("sort") or DEFAULT_SORT
    direction = filters.values.get("dir") or ("asc" if sort == "issue" else "desc")
    wanted = request.GET.get("format", "")
    if wanted == "csv":
        if filters.problems:
            # A CSV is read by programs: refuse rather than silently export other numbers.
            return HttpResponseBadRequest(
                "\n".join(filters.problems) + "\n", content_type="text/plain; charset=utf-8"
            )
        report = build_report(filters.cost_filter(org), sort=sort, descending=direction == "desc")
        return cost_per_issue_csv(report)
    if wanted == "focus":
        if filters.problems:
            return HttpResponseBadRequest(
                "\n".join(filters.problems) + "\n", content_type="text/plain; charset=utf-8"
            )
        cost_filter = filters.cost_filter(org)
        return focus_csv(ledger_rows(cost_filter), org, cost_filter.period)
    if wanted:
        filters.problems.append(
            "Format: only format=csv or format=focus is available. Showing the page."
        )
    # The page shows 50 rows and the top ten: only those are ranked out of the database, and
    # only those need their issue key and title.
    report = build_page(
        filters.cost_filter(org),
        sort=sort,
        descending=direction == "desc",
        page=request.GET.get("page"),
        per_page=PAGE_SIZE,
    )
    page = Page(report.rows, report.page_number, KnownCountPaginator(report.count, PAGE_SIZE))

    def fmt(value: Decimal) -> str:
        return format_money(value, report.currency)

    top = [r for r in report.top if r.amount > 0]
    report.label([*page.object_list, *top])
    issue_url = url_for_each("issue_cost", "sample-key")
    top_chart = charts.horizontal_bars(
        [charts.Bar(r.key, r.amount, issue_url(r.key)) for r in top],
        title=f"Top {len(top)} issues by cost, {report.filter.period.label}",
        desc="; ".join(f"{r.key}: {fmt(r.amount)}" for r in top) or "No cost in this range.",
        fmt=fmt,
    )
    daily_chart = charts.columns(
        [charts.Bar(f"{day:%Y-%m-%d}", amount) for day, amount in report.daily],
        title=f"Cost per day (UTC), {report.filter.period.label}",
        desc=f"Daily cost from {report.daily[0][0]:%Y-%m-%d} to {report.daily[-1][0]:%Y-%m-%d}; "
        f"total {fmt(report.totals.amount)}.",
        fmt=fmt,
    )
    context = {
        "title": "Cost per Issue",
        "form": form,
        "filters": filters,
        "report": report,
        "page": page,
        "issue_rows": [(r, issue_url(r.key)) for r in page.object_list],
        "sort": sort,
        "direction": direction,
        "sorts": [(key, label) for key, (label, _) in SORTS.items()],
        "top_chart": top_chart if top else "",
        "daily_chart": daily_chart,
        "columns": COLUMNS,
        "months": statuses(org.pk, report.filter.period.first_day, report.filter.period.last_day),
        "poll_seconds": poll_seconds("cost_per_issue"),
    }
    # The poll gets its figures alone: the report would also bring the date fields (out of
    # band, over what is being typed) and reload Cost by outcome.
    partial = "figures" if is_poll_of(request, COST_FIGURES) else "report"
    return render(request, htmx_template(request, "billing/cost_per_issue.html", partial), context)


@org_view("billing.view")
def cost_by_outcome(request: HttpRequest) -> HttpResponse:
    """Cost per Issue's "Cost by outcome" section, for the same filters.

    Loaded by the page after it has rendered (hx-trigger="load"): it groups the range's ledger
    rows by session, which on a large ledger takes far longer than the rest of the page,
    whose figures come from the daily rollup.
    """
    filters = read_filters(CostPerIssueForm(request.GET, org=org_of(request)))
    context = {
        "o": outcome_report(filters.cost_filter(org_of(request))),
        "poll_seconds": poll_seconds("cost_by_outcome"),
    }
    return render(request, "billing/_outcomes.html", context)


@org_view("billing.view")
def issue_cost(request: HttpRequest, key: str) -> HttpResponse:
    org = org_of(request)
    issue = get_for_org(request, Issue.objects.all(), key=key)
    rows = CostEvent.objects.filter(org=org, issue=issue)
    # From the daily rollup (kept equal to the ledger by the database): an issue's all-time
    # rows can be most of the ledger.
    totals = issue_totals(org.pk, issue.pk)
    sessions = Paginator(
        Session.objects.filter(org=org, issue=issue)
        .select_related("pool")
        .order_by("-created_at", "-id"),
        PAGE_SIZE,
    ).get_page(request.GET.get("sessions_page"))
    # Each shown session's cost and billed seconds: one grouped query for the page's rows.
    billed = ledger_sums(s.pk for s in sessions.object_list)
    context = {
        "title": f"Cost of {issue.key}",
        "issue": issue,
        "totals": totals,
        "sessions": sessions,
        "session_rows": [(s, *billed.get(s.pk, (None, None))) for s in sessions.object_list],
        "page": _ledger_page(
            request,
            rows.select_related("session", "pool", "rate_card", "reverses", "reversed_by"),
            totals["n"],
        ),
        "poll_seconds": poll_seconds("issue_cost"),
    }
    return render(request, htmx_template(request, "billing/issue_cost.html", "figures"), context)


@org_view("billing.view")
def ledger(request: HttpRequest) -> HttpResponse:
    org = org_of(request)
    form = LedgerFilterForm(request.GET, org=org)
    filters = read_filters(form)
    cost_filter = filters.cost_filter(org)
    rows = ledger_rows(cost_filter)
    key = (filters.values.get("issue") or "").strip() or None
    # The issue by its id: the pages' id scan then reads the (org, issue, occurred_at, id)
    # index in order, with no join to the issues and no sort.
    issue_id = None
    if key is not None:
        issue_id = Issue.objects.filter(org=org, key=key).values_list("pk", flat=True).first()
    unknown_issue = key is not None and issue_id is None
    if issue_id is not None:
        rows = rows.filter(issue_id=issue_id)
    elif unknown_issue:
        rows = rows.none()
    if session_id := filters.values.get("session"):
        rows = rows.filter(session_id=session_id)
    reversals = filters.values.get("reversals", "")
    if reversals == "only":
        rows = rows.filter(reverses__isnull=False)
    elif reversals == "exclude":
        rows = rows.filter(reverses__isnull=True)
    # The rollup has the same totals for range, pool, provider and issue; the ledger itself
    # is summed only for filters the rollup does not know (a session, reversals).
    if session_id or reversals or unknown_issue:
        totals = rows.totals()
    else:
        totals = rollup_totals(cost_filter, issue_id)
    page = _ledger_page(
        request,
        rows.select_related("session", "issue", "pool", "rate_card", "reverses", "reversed_by"),
        totals["n"],
    )
    context = {
        "title": "Ledger",
        "form": form,
        "filters": filters,
        "totals": totals,
        "page": page,
        "poll_seconds": poll_seconds("ledger"),
    }
    return render(request, htmx_template(request, "billing/ledger.html", "results"), context)
