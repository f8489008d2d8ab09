"""Keeps the active organisation on every request.

The active org lives in the session; a user who belongs to one org never has to pick it.
``request.membership`` is None for a user without any membership (they see a plain page
saying so, never another org's data).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from rensei.models import Membership

SESSION_KEY = "active_org_id"


def active_membership(request: HttpRequest) -> Membership | None:
    user = request.user
    if not user.is_authenticated:
        return None
    memberships = Membership.objects.filter(user_id=user.pk).select_related("org")
    wanted = request.session.get(SESSION_KEY)
    if wanted is not None:
        chosen = memberships.filter(org_id=wanted).first()
        if chosen is not None:
            return chosen
    first = memberships.order_by("org__name").first()
    if first is not None:
        request.session[SESSION_KEY] = first.org_id
    return first


class ActiveOrgMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        membership = active_membership(request)
        request.membership = membership  # type: ignore[attr-defined]
        request.org = membership.org if membership else None  # type: ignore[attr-defined]
        return self.get_response(request)
