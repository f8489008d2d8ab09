"""The dashboard's budgets panel and the in-app alert banner.

Both read what the last pass wrote, so the dashboard pays one query for the panel (the org's
org and pool budgets with their snapshots) and every page one for the banner (whether the
org has alerts of the last week; a second reads them when it has), and only for people who
may read budgets (admins and finance).
"""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from budgets import alerts
from budgets.charts import month_chart
from budgets.consumption import month_period
from budgets.models import Budget, Scope
from rensei.models import Membership


def _membership(request: HttpRequest) -> Membership | None:
    membership: Membership | None = getattr(request, "membership", None)
    if membership is None or not membership.can("budgets.view"):
        return None
    return membership


def panel_rows(budgets: list[Budget], period: str) -> list[dict[str, Any]]:
    rows = []
    for budget in budgets:
        snap = budget.snapshot if isinstance(budget.snapshot, dict) else {}
        current = snap.get("period") == period
        consumed = Decimal(snap["consumed"]) if current and snap.get("consumed") else Decimal(0)
        forecast = Decimal(snap["forecast"]) if current and snap.get("forecast") else None
        percent = (consumed / budget.amount_usd * 100).quantize(Decimal("0.1"))
        rows.append(
            {
                "budget": budget,
                "consumed": consumed,
                "forecast": forecast,
                "percent": percent,
                "bar": min(int(percent), 100),
                "over": consumed >= budget.amount_usd,
                "warning": forecast is not None and forecast >= budget.amount_usd,
                "as_of": snap.get("at") if current else None,
                "daily": snap.get("daily") if current else None,
            }
        )
    return rows


def dashboard_panel(request: HttpRequest) -> tuple[str, dict[str, Any]] | None:
    membership = _membership(request)
    if membership is None:
        return None
    now = timezone.now()
    period = month_period(now)
    budgets = list(
        Budget.objects.filter(org=membership.org, scope__in=[Scope.ORG, Scope.POOL])
        .select_related("pool")
        .order_by("scope", "pool__name", "pk")
    )
    rows = panel_rows(budgets, period)
    chart = None
    main = next((r for r in rows if r["daily"]), None)
    if main is not None:
        points = [(date.fromisoformat(d), Decimal(v)) for d, v in main["daily"]]
        chart = month_chart(
            title=f"{main['budget'].label}: actual vs budget vs forecast, {period} (UTC)",
            points=points,
            budget=main["budget"].amount_usd,
            forecast=main["forecast"],
            days_in_month=calendar.monthrange(now.year, now.month)[1],
        )
    context = {
        "rows": rows,
        "chart": chart,
        "period": period,
        "can_manage": membership.can("budgets.manage"),
    }
    return "budgets/_dashboard_panel.html", context


def banner(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the org's recent threshold alerts, for admins and finance."""
    membership = _membership(request)
    if membership is None:
        return {}
    return {"budget_alerts": alerts.banner(membership.org_id, timezone.now())}
