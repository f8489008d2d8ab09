"""The demo org's budgets, built through the same function the Budgets page uses.

Added once (an org with budgets is left as it is), after ``billing.demo.build`` has written
the pools, issues and cost history:

- the org's monthly budget at 1.2 × the month-end forecast (notify only);
- a monthly budget for the main pool at three times the forecast, which blocks;
- a default per-issue budget of $25 that notifies, and the costliest issue's own budget
  sized so its spend is at 75 %: near its 80 % threshold, which its live session crosses.

Then one budget pass, so the dashboard panel and the banner have figures at once.
"""

from __future__ import annotations

from decimal import ROUND_UP, Decimal

from django.utils import timezone

from budgets import services, sweep
from budgets.figures import org_figures
from budgets.models import Budget, Enforcement, Scope
from pools.models import CapacityPool
from rensei.demo import MAIN_POOL
from rensei.models import Channel, Organization
from sessions.models import Issue

NEAR = Decimal("0.75")
CENT = Decimal("0.01")


def build(org: Organization) -> list[str]:
    """The demo budgets; notes for the terminal. Idempotent."""
    if Budget.objects.filter(org=org).exists():
        return ["Budgets: already set (left as they are)."]
    now = timezone.now()
    # Read the month and the issues through placeholder budgets (never saved).
    probe = [Budget(org=org, scope=Scope.ORG, amount_usd=Decimal(1))]
    probe += [
        Budget(org=org, scope=Scope.ISSUE, issue=issue, amount_usd=Decimal(1))
        for issue in Issue.objects.filter(org=org)
    ]
    figures = org_figures(org.pk, now, probe)
    month = next((f for f in figures if f.budget.scope == Scope.ORG), None)
    forecast = (month.forecast or month.consumed) if month else Decimal(0)
    top = max(
        (f for f in figures if f.budget.scope == Scope.ISSUE),
        key=lambda f: f.consumed,
        default=None,
    )
    pool = CapacityPool.objects.filter(org=org, name=MAIN_POOL).first()
    values: list[dict[str, object]] = [
        {
            "scope": Scope.ORG,
            "amount_usd": max(
                (forecast * Decimal("1.2")).quantize(Decimal(1), ROUND_UP), Decimal(1)
            ),
            "enforcement": Enforcement.NOTIFY,
        },
        {"scope": Scope.ISSUE, "amount_usd": Decimal("25.00"), "enforcement": Enforcement.NOTIFY},
    ]
    if pool is not None:
        values.append(
            {
                "scope": Scope.POOL,
                "pool": pool,
                "amount_usd": max((forecast * 3).quantize(CENT, ROUND_UP), Decimal("5.00")),
                "enforcement": Enforcement.BLOCK,
            }
        )
    near = ""
    if top is not None and top.consumed > 0:
        # The costliest issue's own budget, with its spend at 75 %: near its 80 % threshold.
        amount = (top.consumed / NEAR).quantize(CENT, ROUND_UP)
        values.append(
            {
                "scope": Scope.ISSUE,
                "issue": top.budget.issue,
                "amount_usd": amount,
                "enforcement": Enforcement.NOTIFY,
            }
        )
        near = f", and {top.issue_key}'s own ${amount} with its spend at 75 % (near 80 %)"
    for value in values:
        services.save_budget(
            org, {"thresholds": [50, 80, 100], **value}, actor=None, channel=Channel.CLI
        )
    sweep.evaluate_org(org.pk)
    return [
        "Budgets: the org's monthly budget, a blocking budget for the main pool, $25 per "
        f"issue{near} (Settings → Budgets)."
    ]
