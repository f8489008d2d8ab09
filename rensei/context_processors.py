"""Navigation drawn from the same capability table the views enforce."""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest

from rensei.models import Membership


def navigation(request: HttpRequest) -> dict[str, Any]:
    membership: Membership | None = getattr(request, "membership", None)
    if membership is None:
        return {"nav_can": {}, "user_memberships": []}
    can = {
        "settings": membership.can("integrations.manage")
        or membership.can("capacity.view")
        or membership.can("budgets.view"),
        "integrations": membership.can("integrations.manage"),
        "capacity": membership.can("capacity.view"),
        "sessions": membership.can("sessions.view"),
        "billing": membership.can("billing.view"),
        "budgets": membership.can("budgets.view"),
    }
    memberships = list(
        Membership.objects.filter(user_id=cast(int, request.user.pk))
        .select_related("org")
        .order_by("org__name")
    )
    return {"nav_can": can, "user_memberships": memberships}
