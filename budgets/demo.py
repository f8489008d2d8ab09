"""The demo org's budgets, built through the same function the Budgets page uses.

Added once (an org with budgets is left as it is), after ``billing.demo.build`` has written
the pools, issues and cost history:

- the org's monthly budget, sized so this month's spend is at 75 % of it: near its 80 %
  threshold, which the live sessions cross while you watch (notify only);
- a monthly budget for the main pool at three times the month's forecast, which blocks;
- a default per-issue budget of $25 that notifies, and one issue with its own $2 budget.

Then one budget pass, so the dashboard panel and the banner have figures at once.
"""

from __future__ import annotations

from decimal import ROUND_UP, Decimal

from django.utils import timezone

from budgets import services, sweep
from budgets.figures import org_figures
from budgets.models import Budget, Enforcement, Scope
from pools.models import CapacityPool
from rensei.demo import ISSUES, MAIN_POOL
from rensei.models import Channel, Organization
from sessions.models import Issue

NEAR = Decimal("0.75")
CENT = Decimal("0.01")


def build(org: Organization) -> list[str]:
    """The demo budgets; notes for the terminal. Idempotent."""
    if Budget.objects.filter(org=org).exists():
        return ["Budgets: already set (left as they are)."]
    figures = [  # the month so far, with a placeholder budget to read the figures through
        f
        for f in org_figures(
            org.pk, timezone.now(), [Budget(org=org, scope=Scope.ORG, amount_usd=Decimal(1))]
        )
    ]
    spent = figures[0].consumed if figures else Decimal(0)
    forecast = figures[0].forecast if figures and figures[0].forecast else spent
    org_amount = max((spent / NEAR).quantize(CENT, rounding=ROUND_UP), Decimal("1.00"))
    pool = CapacityPool.objects.filter(org=org, name=MAIN_POOL).first()
    values = [
        {"scope": Scope.ORG, "amount_usd": org_amount, "enforcement": Enforcement.NOTIFY},
        {"scope": Scope.ISSUE, "amount_usd": Decimal("25.00"), "enforcement": Enforcement.NOTIFY},
    ]
    if pool is not None:
        values.append(
            {
                "scope": Scope.POOL,
                "pool": pool,
                "amount_usd": max(
                    (forecast * 3).quantize(CENT, rounding=ROUND_UP), Decimal("5.00")
                ),
                "enforcement": Enforcement.BLOCK,
            }
        )
    own = Issue.objects.filter(org=org, key=ISSUES[-1].key).first()
    if own is not None:
        values.append(
            {
                "scope": Scope.ISSUE,
                "issue": own,
                "amount_usd": Decimal("2.00"),
                "enforcement": Enforcement.NOTIFY,
            }
        )
    for value in values:
        services.save_budget(
            org, {"thresholds": [50, 80, 100], **value}, actor=None, channel=Channel.CLI
        )
    sweep.evaluate_org(org.pk)
    return [
        f"Budgets: the org's monthly budget is ${org_amount} (this month's spend is at 75 %), "
        "a blocking budget for the main pool, $25 per issue and $2 for one issue "
        "(Settings → Budgets)."
    ]
