"""Cost figures other pages embed (dashboard home, session detail)."""

from __future__ import annotations

from typing import Any

from rensei.models import Organization


def cost_summary(org: Organization) -> dict[str, Any]:
    """Context for templates/billing/_dashboard_cost.html (cost today, this month, top issues)."""
    return {}
