"""``{% budget_banner %}``: the in-app banner of recent threshold alerts (templates/base.html),
for admins and finance only; one cheap query on the pages where it shows (two when the org
has recent alerts)."""

from __future__ import annotations

from typing import Any

from django import template

from budgets.panel import banner

register = template.Library()


@register.inclusion_tag("budgets/_banner.html", takes_context=True)
def budget_banner(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    return banner(request) if request is not None else {}
