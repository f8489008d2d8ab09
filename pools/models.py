"""Capacity pools: where an org's sessions run, with which provider and config."""

from __future__ import annotations

from django.db import models

from pools.providers import provider_choices
from rensei.models import Organization


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Not checked"
    RUNNING = "running", "Checking"
    PASSING = "passing", "Passing"
    FAILING = "failing", "Failing"


class CapacityPool(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="pools")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=32, choices=provider_choices(), default="e2b")
    # Normalised by the provider's validate_config before it is saved.
    config = models.JSONField(default=dict)
    # Extra runtime/requirement kinds this pool provides beyond the provider's defaults,
    # e.g. ["toolchain:go"] for a custom template that bakes Go.
    runtime_provides = models.JSONField(default=list, blank=True)
    order = models.PositiveIntegerField(default=0)
    concurrency_cap = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The latest health check, denormalised for the pools table.
    health_status = models.CharField(
        max_length=16, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN
    )
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_output = models.TextField(blank=True)
    health_duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="pool_unique_org_name"),
        ]
        indexes = [
            # Dispatch: the org's enabled pools by priority.
            models.Index(fields=["org", "enabled", "order"], name="pool_dispatch_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class PoolHealthCheck(models.Model):
    """One run of "Check pool": provision, `which donmai`, terminate."""

    pool = models.ForeignKey(CapacityPool, on_delete=models.CASCADE, related_name="health_checks")
    status = models.CharField(
        max_length=16, choices=HealthStatus.choices, default=HealthStatus.RUNNING
    )
    output = models.TextField(blank=True)
    sandbox_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.pool} check {self.status}"
