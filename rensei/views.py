"""Core pages: the org switcher and the Settings area placeholders that later apps fill."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from rensei.access import org_view
from rensei.middleware import SESSION_KEY
from rensei.models import Membership


@login_required
@require_POST
def switch_org(request: HttpRequest) -> HttpResponse:
    """Make another of the user's orgs the active one. Not a member → 404."""
    try:
        org_id = int(request.POST.get("org", ""))
    except ValueError:
        raise Http404("No such organisation.") from None
    if not Membership.objects.filter(user_id=cast(int, request.user.pk), org_id=org_id).exists():
        raise Http404("No such organisation.")
    request.session[SESSION_KEY] = org_id
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    return redirect(next_url)


@org_view("integrations.manage")
def integrations(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "rensei/coming_soon.html",
        {"title": "Integrations", "coming_with": "provider credentials"},
    )


@org_view("integrations.manage")
def api_tokens(request: HttpRequest) -> HttpResponse:
    return render(
        request, "rensei/coming_soon.html", {"title": "API tokens", "coming_with": "API tokens"}
    )
