"""Settings → Execution → Capacity."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from rensei.access import org_view


@org_view("capacity.view")
def capacity(request: HttpRequest) -> HttpResponse:
    return render(
        request, "rensei/coming_soon.html", {"title": "Capacity", "coming_with": "capacity pools"}
    )
