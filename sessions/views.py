"""Dashboard and session pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from rensei.access import org_view


@org_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "sessions/dashboard.html")


@org_view("sessions.view")
def session_list(request: HttpRequest) -> HttpResponse:
    return render(
        request, "rensei/coming_soon.html", {"title": "Sessions", "coming_with": "sessions"}
    )
