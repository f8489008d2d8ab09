"""Capacity pools: where an org's sessions run, with which provider and config."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Count, Q, QuerySet

from pools.env import EncryptedConfigField
from pools.providers import provider_choices
from rensei.models import Channel, Organization

# Session states that no longer hold a sandbox (sessions/models.py owns the full list).
# Pools count sessions through the reverse relation ``pool.sessions`` with these strings, so
# the pools app never imports sessions (data flows rensei ← pools ← sessions).
TERMINAL_SESSION_STATES = ("terminated", "failed", "lost")


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Not checked"
    RUNNING = "running", "Checking"
    PASSING = "passing", "Passing"
    FAILING = "failing", "Failing"


class CapacityPool(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="pools")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=32, choices=provider_choices(), default="e2b")
    # Normalised by the provider's validate_config before it is saved; env values encrypted
    # in the column (pools/env.py).
    config = EncryptedConfigField(default=dict)
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

    @property
    def template_label(self) -> str:
        """What sandboxes start from: the snapshot when set, else the template id."""
        config = self.config if isinstance(self.config, dict) else {}
        if config.get("snapshotId"):
            return f"snapshot {config['snapshotId']}"
        return str(config.get("templateId") or "base")


def with_session_counts(queryset: QuerySet[CapacityPool]) -> QuerySet[CapacityPool]:
    """Annotate running / paused / live / total session counts in the same query."""
    return queryset.annotate(
        running_count=Count("sessions", filter=Q(sessions__state="running")),
        paused_count=Count("sessions", filter=Q(sessions__state="paused")),
        live_count=Count(
            "sessions",
            filter=Q(sessions__isnull=False) & ~Q(sessions__state__in=TERMINAL_SESSION_STATES),
        ),
        session_count=Count("sessions"),
    )


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
    # Set when a worker claims the check (conditional UPDATE): a second delivery of the
    # same job finds it set and does nothing, unless the first worker died long ago.
    run_started_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEB)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.pool} check {self.status}"

    @property
    def finished(self) -> bool:
        return self.status in (HealthStatus.PASSING, HealthStatus.FAILING)

    def timing_items(self) -> list[tuple[str, Any]]:
        timings = self.timings if isinstance(self.timings, dict) else {}
        names = (("provision_ms", "provision"), ("exec_ms", "exec"), ("terminate_ms", "terminate"))
        return [(label, timings[key]) for key, label in names if key in timings]
