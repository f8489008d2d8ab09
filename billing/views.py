"""Cost per Issue analytics and the ledger."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from rensei.access import org_view


@org_view("billing.view")
def cost_per_issue(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "rensei/coming_soon.html",
        {"title": "Cost per Issue", "coming_with": "the billing ledger"},
    )


@org_view("billing.view")
def ledger(request: HttpRequest) -> HttpResponse:
    return render(
        request, "rensei/coming_soon.html", {"title": "Ledger", "coming_with": "the billing ledger"}
    )
