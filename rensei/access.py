"""Access helpers every view calls first.

- Another org's objects answer 404 (``get_for_org``): an outsider learns nothing, not even
  that the id exists.
- A role that may not do a thing answers 403 (``require``).
- ``org_view(capability)`` wraps a view: login required, a membership required, and the
  capability checked before the view body runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from rensei.models import Membership, Organization

M = TypeVar("M", bound=Model)
View = Callable[..., HttpResponse]


def membership_of(request: HttpRequest) -> Membership:
    membership: Membership | None = getattr(request, "membership", None)
    if membership is None:
        raise PermissionDenied("You are not a member of any organisation.")
    return membership


def org_of(request: HttpRequest) -> Organization:
    return membership_of(request).org


def require(request: HttpRequest, capability: str) -> Membership:
    membership = membership_of(request)
    if not membership.can(capability):
        raise PermissionDenied("Your role does not allow this.")
    return membership


def get_for_org(request: HttpRequest, queryset: QuerySet[M], **lookup: Any) -> M:
    """The object if it belongs to the active org, else 404."""
    return get_object_or_404(queryset.filter(org=org_of(request)), **lookup)


def org_view(capability: str | None = None) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if getattr(request, "membership", None) is None:
                return render(request, "rensei/no_org.html", status=403)
            if capability is not None:
                require(request, capability)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
