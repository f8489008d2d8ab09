"""Navigation drawn from the same capability table the views enforce."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from rensei.middleware import memberships_of
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
    # The org switcher's list: the middleware read it with the active membership.
    return {"nav_can": can, "user_memberships": memberships_of(request)}
