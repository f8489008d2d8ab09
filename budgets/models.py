"""Budgets, their enforcement state per period, the alerts they fired and the actions taken.

A budget covers a scope: the org, one pool, or issues. Org and pool budgets run per UTC
calendar month (period ``2026-12``). Issue budgets cover everything an issue has cost
(period ``issue-<id>``): the org's default per-issue budget (``issue`` empty) applies to every
issue without its own, and an issue's own row (set on its page or by the dispatcher's
``issue.budget_usd``) overrides it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from pools.models import CapacityPool
from rensei.models import Organization
from sessions.models import Issue, Session

DEFAULT_THRESHOLDS = [50, 80, 100]
MIN_THRESHOLD = 1
MAX_THRESHOLD = 1000


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class Scope(models.TextChoices):
    ORG = "org", "Organisation (monthly)"
    POOL = "pool", "Pool (monthly)"
    ISSUE = "issue", "Issue (its whole life)"


class Enforcement(models.TextChoices):
    NOTIFY = "notify", "Notify only"
    BLOCK = "block", "Block new sessions"
    PAUSE = "pause", "Pause live sessions"


class Budget(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="budgets")
    scope = models.CharField(max_length=8, choices=Scope.choices)
    pool = models.ForeignKey(
        CapacityPool, on_delete=models.CASCADE, null=True, blank=True, related_name="budgets"
    )
    # Scope "issue": the issue's own budget; empty = the org's default per-issue budget.
    issue = models.ForeignKey(
        Issue, on_delete=models.CASCADE, null=True, blank=True, related_name="budgets"
    )
    amount_usd = models.DecimalField(max_digits=12, decimal_places=2)
    # Percentages of the amount (1–1000) at which an alert fires, ascending.
    thresholds = models.JSONField(default=default_thresholds)
    enforcement = models.CharField(
        max_length=8, choices=Enforcement.choices, default=Enforcement.NOTIFY
    )
    # The last pass's figures for org and pool budgets (period, consumed, forecast, at, and
    # the month's cumulative spend per day), so the dashboard panel reads one row per budget.
    snapshot = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["org"], condition=Q(scope="org"), name="budget_one_org_budget"
            ),
            models.UniqueConstraint(
                fields=["org", "pool"], condition=Q(scope="pool"), name="budget_one_per_pool"
            ),
            models.UniqueConstraint(
                fields=["org", "issue"],
                condition=Q(scope="issue", issue__isnull=False),
                name="budget_one_per_issue",
            ),
            models.UniqueConstraint(
                fields=["org"],
                condition=Q(scope="issue", issue__isnull=True),
                name="budget_one_issue_default",
            ),
            models.CheckConstraint(
                condition=Q(amount_usd__gt=0) & Q(amount_usd__lte=1_000_000_000),
                name="budget_amount_positive",
            ),
            models.CheckConstraint(
                condition=(
                    Q(scope="org", pool__isnull=True, issue__isnull=True)
                    | Q(scope="pool", pool__isnull=False, issue__isnull=True)
                    | Q(scope="issue", pool__isnull=True)
                ),
                name="budget_scope_matches_target",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        if self.scope == Scope.ORG:
            return "Organisation, monthly"
        if self.scope == Scope.POOL:
            return f"Pool {self.pool.name if self.pool else '?'}, monthly"
        if self.issue_id is None:
            return "Each issue (default)"
        return f"Issue {self.issue.key if self.issue else '?'}"


class BudgetState(models.Model):
    """A budget's enforcement in one period: when it reached its amount and acted, and
    whether an admin lifted it. Written only when enforcement starts or is lifted, so the
    create path reads one small table (``budgets.admission``)."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="states")
    period = models.CharField(max_length=32)
    issue = models.ForeignKey(
        Issue, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    consumed_usd = models.DecimalField(max_digits=24, decimal_places=12)
    enforced_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget", "period"], name="budgetstate_one_per_period")
        ]
        indexes = [
            models.Index(fields=["period", "enforced_at"], name="budgetstate_period_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.budget_id} {self.period}"

    @property
    def enforcing(self) -> bool:
        return self.enforced_at is not None and self.released_at is None


class BudgetAlert(models.Model):
    """A threshold crossed: once per budget, period and threshold (the unique constraint is
    what makes concurrent crossings fire once; the loser's insert fails and does nothing)."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period = models.CharField(max_length=32)
    threshold = models.PositiveIntegerField()
    issue = models.ForeignKey(
        Issue, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    consumed_usd = models.DecimalField(max_digits=24, decimal_places=12)
    amount_usd = models.DecimalField(max_digits=12, decimal_places=2)
    at = models.DateTimeField()
    emailed_to = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period", "threshold"], name="budgetalert_once"
            )
        ]
        # The banner on every page for admins and finance: the org's newest alerts.
        indexes = [models.Index(fields=["-at", "-id"], name="budgetalert_recent_idx")]

    def __str__(self) -> str:
        return f"{self.threshold} % of budget {self.budget_id} ({self.period})"


class ActionKind(models.TextChoices):
    ENFORCED = "enforced", "Enforcement started"
    PAUSED = "paused", "Session paused"
    REFUSED = "refused", "New session refused"
    RAISED = "raised", "Budget changed"
    RELEASED = "released", "Enforcement lifted"


class BudgetAction(models.Model):
    """What a budget did (or a person did to it), for its detail page."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="actions")
    period = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=ActionKind.choices)
    session = models.ForeignKey(
        Session, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.CharField(max_length=300)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} ({self.period})"
