"""Month close pages: each month's totals and whether it is closed; close and reopen.

Finance and admins see the page and close ended months; only admins reopen one, with a
reason (audited). Both actions go through a confirmation page (GET) before the POST acts.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from billing.closing import (
    CLOSE_ROLES,
    REOPEN_ROLES,
    CloseRefused,
    close_month,
    first_month,
    month_bounds,
    month_of,
    month_totals,
    months_totals,
    reopen_month,
    statuses,
)
from billing.models import MonthClose
from billing.polling import htmx_template, poll_seconds
from rensei.access import membership_of, org_of, org_view

MONTHS_SHOWN = 12


class ReopenForm(forms.Form):
    reason = forms.CharField(
        max_length=1000,
        strip=True,
        error_messages={"required": "Say why the month is reopened: the audit log keeps it."},
    )


def _month(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise Http404("No such month.") from None


def _may(request: HttpRequest, roles: frozenset[str]) -> bool:
    return membership_of(request).role in roles


@org_view("billing.view")
def months(request: HttpRequest) -> HttpResponse:
    org = org_of(request)
    now = timezone.now()
    last = month_of(now.date())
    first = last
    for _ in range(MONTHS_SHOWN - 1):
        first = month_of(first - timedelta(days=1))
    # Not the months before the org had anything: a new org sees this month alone.
    first = min(max(first, first_month(org)), last)
    totals = months_totals(org.pk, first, last)
    rows = []
    for status in reversed(statuses(org.pk, first, last)):
        live = totals[status.month]
        rows.append(
            {
                "status": status,
                "live": live,
                "ended": month_bounds(status.month)[1] <= now,
                "key": f"{status.month:%Y-%m}",
            }
        )
    history = MonthClose.objects.filter(org=org).select_related("closed_by", "reopened_by")[:50]
    context = {
        "title": "Month close",
        "rows": rows,
        "history": history,
        "can_close": _may(request, CLOSE_ROLES),
        "can_reopen": _may(request, REOPEN_ROLES),
        "poll_seconds": poll_seconds("months"),
    }
    # The page polls its two tables: the open months' totals move as usage lands, and a
    # month closed or reopened elsewhere shows its new status.
    return render(request, htmx_template(request, "billing/months.html", "months"), context)


@org_view("billing.view")
@require_http_methods(["GET", "POST"])
def close(request: HttpRequest, month: str) -> HttpResponse:
    if not _may(request, CLOSE_ROLES):
        raise PermissionDenied("Only finance or an admin closes a month.")
    org, day = org_of(request), _month(month)
    totals = month_totals(org.pk, day)
    if request.method == "POST":
        try:
            close_month(org, day, actor=request.user)
        except CloseRefused as exc:
            context = {"title": "Close month", "month": day, "totals": totals, "error": str(exc)}
            return render(request, "billing/month_close_confirm.html", context, status=409)
        messages.success(request, f"{day:%B %Y} is closed; its totals are frozen.")
        return redirect("billing_months")
    context = {"title": "Close month", "month": day, "totals": totals}
    return render(request, "billing/month_close_confirm.html", context)


@org_view("billing.view")
@require_http_methods(["GET", "POST"])
def reopen(request: HttpRequest, month: str) -> HttpResponse:
    if not _may(request, REOPEN_ROLES):
        raise PermissionDenied("Only an admin reopens a closed month.")
    org, day = org_of(request), _month(month)
    standing = MonthClose.objects.filter(org=org, month=day, reopened_at__isnull=True).first()
    if standing is None:
        raise Http404("That month is not closed.")
    form = ReopenForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_bound:
        if form.is_valid():
            try:
                reopen_month(org, day, reason=form.cleaned_data["reason"], actor=request.user)
            except CloseRefused as exc:
                form.add_error("reason", str(exc))
            else:
                messages.success(request, f"{day:%B %Y} is open again; the reason is audited.")
                return redirect("billing_months")
        status = 400
    context = {"title": "Reopen month", "month": day, "close": standing, "form": form}
    return render(request, "billing/month_reopen_confirm.html", context, status=status)
