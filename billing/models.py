"""Rate cards and the append-only cost ledger."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

from pools.models import CapacityPool
from rensei.models import Organization
from sessions.models import Issue, Session

# Amounts keep 12 decimal places: one millisecond of 512 MiB RAM is ~2.25e-9 USD.
AMOUNT_PLACES = 12
AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)
SECONDS_QUANTUM = Decimal("0.001")


class RateCard(models.Model):
    """Prices per second of allocated resources, from ``effective_from`` on."""

    provider = models.CharField(max_length=32, default="e2b")
    effective_from = models.DateTimeField()
    vcpu_second_price = models.DecimalField(max_digits=20, decimal_places=12)
    gib_second_price = models.DecimalField(max_digits=20, decimal_places=12)
    currency = models.CharField(max_length=3, default="USD")
    basis = models.CharField(max_length=100, default="allocated vCPU and RAM, per running second")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "effective_from"], name="ratecard_unique_provider_from"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} from {self.effective_from:%Y-%m-%d %H:%M} UTC"


class CostKind(models.TextChoices):
    SANDBOX_SECONDS = "sandbox-seconds", "Sandbox seconds"


class CostEvent(models.Model):
    """One ledger row. Never updated or deleted; a correction is a new row that reverses it."""

    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="cost_events")
    session = models.ForeignKey(
        Session, on_delete=models.PROTECT, null=True, blank=True, related_name="cost_events"
    )
    issue = models.ForeignKey(
        Issue, on_delete=models.PROTECT, null=True, blank=True, related_name="cost_events"
    )
    pool = models.ForeignKey(
        CapacityPool, on_delete=models.PROTECT, null=True, blank=True, related_name="cost_events"
    )
    provider = models.CharField(max_length=32)
    kind = models.CharField(
        max_length=32, choices=CostKind.choices, default=CostKind.SANDBOX_SECONDS
    )
    quantity_seconds = models.DecimalField(max_digits=18, decimal_places=3)
    vcpu = models.PositiveIntegerField()
    memory_mb = models.PositiveIntegerField()
    rate_card = models.ForeignKey(RateCard, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(max_digits=24, decimal_places=AMOUNT_PLACES)
    currency = models.CharField(max_length=3, default="USD")
    interval_start = models.DateTimeField(null=True, blank=True)
    interval_end = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    reverses = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by"
    )
    reason = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # Cost per Issue and the ledger: an org's rows in a time range.
            models.Index(fields=["org", "occurred_at"], name="cost_org_occurred_idx"),
            models.Index(fields=["org", "issue", "occurred_at"], name="cost_org_issue_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency} ({self.idempotency_key})"
