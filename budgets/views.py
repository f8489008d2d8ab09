"""Settings → Budgets: the org's budgets (admins edit, finance reads) and each budget's page
with its consumption, forecast, alerts fired and actions taken.

Figures on these pages are computed live (``budgets.figures``: the ledger plus the open
intervals now), and their regions poll themselves so they follow spend without a reload.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from budgets import services
from budgets.figures import Figure, load_budgets, org_figures
from budgets.forms import BudgetForm
from budgets.models import Budget, BudgetAction, BudgetAlert, Scope
from rensei.access import get_for_org, membership_of, org_of, org_view, require
from rensei.models import Channel

PAGE = 25


def _figures_by_budget(figures: list[Figure]) -> dict[int, list[Figure]]:
    out: dict[int, list[Figure]] = {}
    for figure in figures:
        out.setdefault(figure.budget.pk, []).append(figure)
    return out


@org_view("budgets.view")
@require_http_methods(["GET", "POST"])
def budget_list(request: HttpRequest) -> HttpResponse:
    org = org_of(request)
    can_manage = membership_of(request).can("budgets.manage")
    form = BudgetForm(org=org)
    status = 200
    if request.method == "POST":
        require(request, "budgets.manage")
        form = BudgetForm(request.POST, org=org)
        if form.is_valid():
            budget = services.save_budget(
                org, form.values(), actor=request.user, channel=Channel.WEB
            )
            messages.success(request, f"Budget saved: {budget.label}.")
            return redirect("budget_detail", pk=budget.pk)
        status = 400
    budgets = load_budgets(org.pk)
    now = timezone.now()
    by_budget = _figures_by_budget(org_figures(org.pk, now, budgets))
    rows = [(b, by_budget.get(b.pk, [])) for b in budgets]
    context: dict[str, Any] = {
        "rows": rows,
        "form": form,
        "can_manage": can_manage,
        "now": now,
        "title": "Budgets",
    }
    template = (
        "budgets/list.html#table" if request.headers.get("HX-Request") else "budgets/list.html"
    )
    return render(request, template, context, status=status)


@org_view("budgets.view")
@require_http_methods(["GET", "POST"])
def budget_detail(request: HttpRequest, pk: int) -> HttpResponse:
    org = org_of(request)
    budget = get_for_org(request, Budget.objects.select_related("pool", "issue"), pk=pk)
    can_manage = membership_of(request).can("budgets.manage")
    form = BudgetForm(org=org, budget=budget)
    status = 200
    if request.method == "POST":
        require(request, "budgets.manage")
        form = BudgetForm(request.POST, org=org, budget=budget)
        if form.is_valid():
            services.save_budget(
                org, form.values(), budget=budget, actor=request.user, channel=Channel.WEB
            )
            messages.success(request, "Budget changed.")
            return redirect("budget_detail", pk=budget.pk)
        status = 400
    now = timezone.now()
    figures = [f for f in org_figures(org.pk, now) if f.budget.pk == budget.pk]
    alerts = Paginator(
        BudgetAlert.objects.filter(budget=budget).select_related("issue").order_by("-at", "-id"),
        PAGE,
    ).get_page(request.GET.get("alerts"))
    actions = Paginator(
        BudgetAction.objects.filter(budget=budget)
        .select_related("session", "actor")
        .order_by("-at", "-id"),
        PAGE,
    ).get_page(request.GET.get("actions"))
    context = {
        "budget": budget,
        "figures": figures,
        "alerts": alerts,
        "actions": actions,
        "form": form,
        "can_manage": can_manage,
        "now": now,
        "title": f"Budget: {budget.label}",
        "issue_scope": budget.scope == Scope.ISSUE,
    }
    template = (
        "budgets/detail.html#figures"
        if request.headers.get("HX-Request")
        else "budgets/detail.html"
    )
    return render(request, template, context, status=status)


@org_view("budgets.manage")
@require_http_methods(["GET", "POST"])
def budget_release(request: HttpRequest, pk: int) -> HttpResponse:
    """Lift the budget's enforcement for a period and resume what it paused (confirmed)."""
    budget = get_for_org(request, Budget.objects.select_related("pool", "issue"), pk=pk)
    period = (request.POST.get("period") or request.GET.get("period") or "").strip()
    allowed = {services.current_period(budget)} | set(
        budget.states.values_list("period", flat=True)
    )
    if period not in allowed:
        period = services.current_period(budget)
    if request.method == "GET":
        return render(
            request,
            "budgets/confirm_release.html",
            {
                "title": f"Lift the enforcement of {budget.label}?",
                "question": (
                    f"Lift the enforcement of {budget.label} for {period}? New sessions are "
                    "allowed again and the sessions it paused are resumed; alerts still fire."
                ),
                "action": reverse("budget_release", args=[budget.pk]),
                "period": period,
                "button": "Lift enforcement",
                "cancel": reverse("budget_detail", args=[budget.pk]),
            },
        )
    resumed = services.release(budget, period=period, actor=request.user, channel=Channel.WEB)
    messages.success(request, f"Enforcement lifted for {period}; {resumed} session(s) resuming.")
    return redirect("budget_detail", pk=budget.pk)


@org_view("budgets.manage")
@require_http_methods(["GET", "POST"])
def budget_delete(request: HttpRequest, pk: int) -> HttpResponse:
    budget = get_for_org(request, Budget.objects.select_related("pool", "issue"), pk=pk)
    if request.method == "GET":
        return render(
            request,
            "rensei/confirm.html",
            {
                "title": f"Delete the budget {budget.label}?",
                "question": f"Delete the budget {budget.label}? Its alerts and actions go "
                "with it (the audit log keeps the change). This cannot be undone.",
                "action": reverse("budget_delete", args=[budget.pk]),
                "button": "Delete budget",
                "cancel": reverse("budget_detail", args=[budget.pk]),
            },
        )
    label = budget.label
    services.delete_budget(budget, actor=request.user, channel=Channel.WEB)
    messages.success(request, f"Budget deleted: {label}.")
    return redirect("budget_list")
