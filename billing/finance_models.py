"""Finance's own records: closed months, and the daily reconciliation with the provider.

Kept apart from ``billing.models`` (which imports this module at its end) so the ledger's
module stays small. Foreign keys to the ledger are by name ("billing.CostEvent"): this module
imports nothing of billing's, so the two never import each other.

- ``MonthClose``: finance closed a UTC month of an org. Its totals are frozen at the close;
  the database refuses a ledger row dated in the month while the close stands, and refuses
  any change to a close except its one-way reopen (by an admin, with a reason), see
  ``billing/triggers.py``. A reopened close stays as history; closing again adds a new row.
- ``ReconciliationRun`` / ``Discrepancy``: one comparison of an org's day (ledger, running
  intervals, the provider's list of sandboxes) and what it found. A discrepancy is settled
  once, by a ledger entry (an adjustment or a reversal) with a reason.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from rensei.models import Organization
from sessions.models import Session


class MonthClose(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="month_closes")
    month = models.DateField(help_text="The first day of the closed UTC month.")
    amount = models.DecimalField(max_digits=30, decimal_places=12)
    quantity_seconds = models.DecimalField(max_digits=24, decimal_places=3)
    entries = models.IntegerField()
    currency = models.CharField(max_length=3, default="USD")
    closed_at = models.DateTimeField()
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    reopened_at = models.DateTimeField(null=True, blank=True)
    reopened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reopen_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-month", "-closed_at"]
        constraints = [
            # One standing close per org and month; reopened ones are history.
            models.UniqueConstraint(
                fields=["org", "month"],
                condition=Q(reopened_at__isnull=True),
                name="monthclose_one_standing",
            ),
            models.CheckConstraint(
                condition=Q(reopened_at__isnull=True) | ~Q(reopen_reason=""),
                name="monthclose_reopen_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.org_id} {self.month:%Y-%m} closed"

    @property
    def standing(self) -> bool:
        return self.reopened_at is None


class DiscrepancyKind(models.TextChoices):
    PHANTOM = "phantom", "Phantom seconds"
    GHOST = "ghost", "Ghost seconds"
    DRIFT = "drift", "Drift"


class ReconciliationRun(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    ran_at = models.DateTimeField()
    provider_seen = models.BooleanField(default=True)
    provider_error = models.TextField(blank=True)
    sessions = models.IntegerField(default=0)
    ledger_seconds = models.DecimalField(max_digits=24, decimal_places=3, default=0)
    ledger_amount = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    interval_seconds = models.DecimalField(max_digits=24, decimal_places=3, default=0)
    interval_amount = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    phantom_seconds = models.DecimalField(max_digits=24, decimal_places=3, default=0)
    ghost_seconds = models.DecimalField(max_digits=24, decimal_places=3, default=0)
    drift_seconds = models.DecimalField(max_digits=24, decimal_places=3, default=0)
    drift_amount = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    alerted = models.BooleanField(default=False)
    channel = models.CharField(max_length=16, default="job")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-day", "-ran_at", "-id"]
        indexes = [models.Index(fields=["org", "day"], name="reconrun_org_day_idx")]

    def __str__(self) -> str:
        return f"reconciliation of org {self.org_id} for {self.day}"


class Discrepancy(models.Model):
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="found")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    kind = models.CharField(max_length=16, choices=DiscrepancyKind.choices)
    session = models.ForeignKey(
        Session, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    sandbox_id = models.CharField(max_length=64, blank=True)
    # Signed: what the ledger lacks (+) or holds too much of (-) by this finding.
    seconds = models.DecimalField(max_digits=24, decimal_places=3)
    amount = models.DecimalField(max_digits=30, decimal_places=12)
    note = models.CharField(max_length=300, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    settled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    settle_reason = models.TextField(blank=True)
    settlement = models.OneToOneField(
        "billing.CostEvent",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="settles",
    )

    class Meta:
        ordering = ["day", "kind", "session_id", "id"]
        indexes = [models.Index(fields=["org", "day"], name="discrepancy_org_day_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.seconds}s session {self.session_id} on {self.day}"

    @property
    def settled(self) -> bool:
        return self.settled_at is not None
