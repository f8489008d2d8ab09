"""Keeps the active organisation on every request.

The active org lives in the session; a user who belongs to one org never has to pick it.
``request.membership`` is None for a user without any membership (they see a plain page
saying so, never another org's data). The user's memberships are read once per request, in
one query: the active one comes from them, and the navigation's org switcher lists them
(``memberships_of``, which ``rensei.context_processors.navigation`` calls too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from django.http import HttpRequest, HttpResponse

from rensei.models import Membership

SESSION_KEY = "active_org_id"


def memberships_of(request: HttpRequest) -> list[Membership]:
    """The signed-in user's memberships by org name, read on the request's first call only."""
    memberships: list[Membership] | None = getattr(request, "user_memberships", None)
    if memberships is None:
        memberships = list(
            Membership.objects.filter(user_id=cast(int, request.user.pk))
            .select_related("org")
            .order_by("org__name")
        )
        request.user_memberships = memberships  # type: ignore[attr-defined]
    return memberships


def active_membership(request: HttpRequest) -> Membership | None:
    if not request.user.is_authenticated:
        return None
    memberships = memberships_of(request)
    wanted = request.session.get(SESSION_KEY)
    if wanted is not None:
        chosen = next((m for m in memberships if m.org_id == wanted), None)
        if chosen is not None:
            return chosen
    first = memberships[0] if memberships else None
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
