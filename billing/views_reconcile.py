"""Reconciliation pages: the runs (history, newest first), one run's findings, settling a
finding, and "Reconcile now" for a day. Finance and admins only, like the other billing
pages; another org's runs and findings answer 404."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from billing.models import CostEvent, Discrepancy, ReconciliationRun
from billing.polling import htmx_template
from billing.recon_runs import reconcile_day
from billing.reconciliation import alert_seconds, day_bounds
from billing.settlement import METHODS, SettleRefused, settle
from rensei.access import get_for_org, org_of, org_view
from rensei.models import Channel

PAGE_SIZE = 30


class DayForm(forms.Form):
    day = forms.DateField(
        input_formats=["%Y-%m-%d"],
        error_messages={
            "required": "Day: write the UTC day as YYYY-MM-DD.",
            "invalid": "Day: write the UTC day as YYYY-MM-DD, e.g. 2026-03-31.",
        },
    )

    def clean_day(self) -> date:
        day: date = self.cleaned_data["day"]
        if day > timezone.now().date():
            raise forms.ValidationError("Day: a day in the future has nothing to reconcile.")
        return day


class SettleForm(forms.Form):
    method = forms.ChoiceField(
        choices=list(METHODS.items()),
        error_messages={"required": "Method: choose an adjustment entry or a reversal."},
    )
    entry = forms.IntegerField(required=False, min_value=1)
    reason = forms.CharField(
        max_length=1000,
        strip=True,
        error_messages={"required": "Reason: say why this settles the finding."},
    )


@org_view("billing.view")
def runs(request: HttpRequest) -> HttpResponse:
    org = org_of(request)
    page = Paginator(ReconciliationRun.objects.filter(org=org), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "title": "Reconciliation",
        "page": page,
        "form": DayForm(initial={"day": timezone.now().date() - timedelta(days=1)}),
        "threshold": alert_seconds(),
        "latest": page.object_list[0] if page.number == 1 and page.object_list else None,
    }
    return render(request, htmx_template(request, "billing/reconciliation.html", "runs"), context)


@org_view("billing.view")
@require_POST
def run_now(request: HttpRequest) -> HttpResponse:
    org = org_of(request)
    form = DayForm(request.POST)
    if not form.is_valid():
        page = Paginator(ReconciliationRun.objects.filter(org=org), PAGE_SIZE).get_page(1)
        context = {"title": "Reconciliation", "page": page, "form": form}
        context["threshold"] = alert_seconds()
        return render(request, "billing/reconciliation.html", context, status=400)
    result = reconcile_day(
        org,
        form.cleaned_data["day"],
        timeout=settings.RENSEI_WEB_PROVIDER_TIMEOUT,
        actor=request.user,
        channel=Channel.WEB,
    )
    if not result.provider_seen:
        messages.warning(request, f"The provider did not answer ({result.provider_error}).")
    return redirect("reconciliation_run", pk=result.pk)


@org_view("billing.view")
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    result = get_for_org(request, ReconciliationRun.objects.all(), pk=pk)
    found = result.found.select_related("session", "session__issue", "settlement", "settled_by")
    context = {
        "title": f"Reconciliation of {result.day:%Y-%m-%d}",
        "run": result,
        "found": Paginator(found, 100).get_page(request.GET.get("page")),
    }
    return render(request, "billing/reconciliation_run.html", context)


@org_view("billing.view")
@require_http_methods(["GET", "POST"])
def settle_view(request: HttpRequest, pk: int) -> HttpResponse:
    d = get_for_org(request, Discrepancy.objects.select_related("session", "run"), pk=pk)
    start, end = day_bounds(d.day)
    entries = (
        CostEvent.objects.filter(
            org=d.org,
            session_id=d.session_id,
            interval_end__gt=start,
            interval_end__lte=end,
            reverses__isnull=True,
            reversed_by__isnull=True,
        ).order_by("interval_end")[:50]
        if d.session_id
        else []
    )
    form = SettleForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_bound:
        status = 400
        if form.is_valid():
            try:
                settle(
                    d,
                    method=form.cleaned_data["method"],
                    reason=form.cleaned_data["reason"],
                    entry_id=form.cleaned_data.get("entry"),
                    actor=request.user,
                )
            except SettleRefused as exc:
                field = "entry" if str(exc).startswith("Entry") else "reason"
                form.add_error(field if not d.settled else None, str(exc))
                status = 409 if "settled already" in str(exc) else 400
            else:
                messages.success(request, "The finding is settled; the ledger entry is written.")
                return redirect("reconciliation_run", pk=d.run_id)
    context = {"title": "Settle a finding", "d": d, "form": form, "entries": entries}
    return render(request, "billing/reconciliation_settle.html", context, status=status)
