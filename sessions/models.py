"""Issues, sessions, running intervals and in-box command runs."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from pools.models import CapacityPool
from rensei.models import Organization


class Issue(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="issues")
    key = models.CharField(max_length=64)
    title = models.CharField(max_length=300, blank=True)
    url = models.URLField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["org", "key"], name="issue_unique_org_key")]

    def __str__(self) -> str:
        return self.key


class SessionState(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    PAUSING = "pausing", "Pausing"
    PAUSED = "paused", "Paused"
    RESUMING = "resuming", "Resuming"
    TERMINATING = "terminating", "Terminating"
    TERMINATED = "terminated", "Terminated"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost"


TERMINAL_STATES = frozenset({SessionState.TERMINATED, SessionState.FAILED, SessionState.LOST})
LIVE_STATES = frozenset(set(SessionState.values) - TERMINAL_STATES)


class Session(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sessions")
    issue = models.ForeignKey(
        Issue, on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    pool = models.ForeignKey(
        CapacityPool, on_delete=models.PROTECT, null=True, blank=True, related_name="sessions"
    )
    provider = models.CharField(max_length=32, blank=True)
    runtime_kinds = models.JSONField(default=list, blank=True)
    requirement_kinds = models.JSONField(default=list, blank=True)
    # Per-session env for the sandbox: NAME → value encrypted with rensei.crypto (values may
    # be secrets). Pages show the names (keys) only; sessions.services.session_env decrypts.
    env = models.JSONField(default=dict, blank=True)
    requested_pool = models.CharField(max_length=100, blank=True)
    state = models.CharField(
        max_length=16, choices=SessionState.choices, default=SessionState.QUEUED
    )
    # Idempotency: written before the provider is called, sent as E2B metadata and
    # idempotency key, so a retry after a crash adopts the sandbox instead of making another.
    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    sandbox_id = models.CharField(max_length=64, blank=True, db_index=True)
    template = models.CharField(max_length=128, blank=True)
    vcpu = models.PositiveIntegerField(null=True, blank=True)
    memory_mb = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Why this pool was chosen and why each other pool was skipped.
    routing = models.JSONField(default=dict, blank=True)
    # A resume asked for while the pool was at its cap: the session stays ``paused`` and
    # starts resuming when a slot frees, in line with queued sessions (oldest request
    # first). Cleared whenever the session leaves ``paused``.
    resume_requested_at = models.DateTimeField(null=True, blank=True)
    # The latest CPU sample the platform saw (session page's metrics partial, the idle
    # policy's pass), so the sessions list shows CPU % without a provider call per row.
    last_cpu_pct = models.FloatField(null=True, blank=True)
    last_metrics_at = models.DateTimeField(null=True, blank=True)
    # API idempotency: the dispatcher's Idempotency-Key and a hash of the body it came with.
    api_idempotency_key = models.CharField(max_length=255, blank=True)
    api_body_hash = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    state_changed_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "api_idempotency_key"],
                condition=~models.Q(api_idempotency_key=""),
                name="session_unique_org_idempotency_key",
            ),
        ]
        indexes = [
            # Sessions list and dashboard counts: an org's sessions by state, newest first.
            models.Index(fields=["org", "state", "-created_at"], name="session_org_state_idx"),
            # Dispatch: live sessions per pool against its cap.
            models.Index(fields=["pool", "state"], name="session_pool_state_idx"),
            # Sessions list and dashboard "recent sessions" unfiltered: newest first.
            models.Index(fields=["org", "-created_at", "-id"], name="session_org_recent_idx"),
            # Dashboard counts: the live states, and failed or lost since a moment, read from
            # the index alone instead of every session the org ever had.
            models.Index(
                fields=["org", "state", "state_changed_at"], name="session_org_state_changed_idx"
            ),
            # Cost per Issue: the sessions alive in a range (ended after its start, or not
            # ended), with what the report groups and sums, from the index alone.
            models.Index(
                fields=["org", "ended_at"],
                include=["started_at", "issue", "pool", "provider"],
                name="session_org_ended_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.pk} ({self.state})"


class SessionTransition(models.Model):
    """The session's timeline: one row per state change."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state or 'new'} → {self.to_state}"


class RunningInterval(models.Model):
    """A span during which the sandbox ran (and cost money). Paused time is not an interval."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="intervals")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            # At most one open interval per session: opening twice is a bug, not a race to win.
            models.UniqueConstraint(
                fields=["session"],
                condition=models.Q(ended_at__isnull=True),
                name="interval_one_open_per_session",
            ),
        ]

    def __str__(self) -> str:
        return f"interval {self.started_at:%Y-%m-%d %H:%M:%S} – {self.ended_at or 'open'}"

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class CommandRunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    ERROR = "error", "Error"


class CommandRun(models.Model):
    """A one-shot command an admin ran in the box. Env values are never stored, only names."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="command_runs")
    command = models.TextField()
    env_names = models.JSONField(default=list, blank=True)
    # The per-command env values, encrypted (rensei.crypto), only until the exec job has
    # used them: the job clears it, so values never outlive the run and never ride in a
    # task argument.
    env_encrypted = models.TextField(blank=True)
    timeout_seconds = models.PositiveIntegerField(default=600)
    state = models.CharField(
        max_length=16, choices=CommandRunState.choices, default=CommandRunState.QUEUED
    )
    exit_code = models.IntegerField(null=True, blank=True)
    stdout = models.TextField(blank=True)
    stderr = models.TextField(blank=True)
    stdout_truncated = models.BooleanField(default=False)
    stderr_truncated = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # An error because the command ran past timeout_seconds (and was stopped).
    timed_out = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.command[:60]

    @property
    def finished(self) -> bool:
        return self.state in (CommandRunState.DONE, CommandRunState.ERROR)

    @property
    def outcome(self) -> str:
        """The run in a word or two: "Exited 3" says more than "Done"."""
        if self.state == CommandRunState.DONE and self.exit_code is not None:
            return f"Exited {self.exit_code}"
        if self.state == CommandRunState.ERROR:
            return "Timed out" if self.timed_out else "Error"
        return self.get_state_display()


class PolicyKind(models.TextChoices):
    IDLE_PAUSE = "idle_pause", "Idle auto-pause"
    PAUSED_TERMINATE = "paused_terminate", "Paused too long"
    MAX_AGE = "max_age", "Maximum session age"


class PolicyAction(models.Model):
    """A pause or terminate that a pool's lifecycle policy asked for (sessions/policies.py).

    The marker the "saved by auto-pause" figure reads: a pause row says the paused stretch
    that followed it was the policy's doing. Written in the transaction of the request, so
    a row exists if and only if the request won.
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="policy_actions")
    kind = models.CharField(max_length=24, choices=PolicyKind.choices)
    action = models.CharField(max_length=16)  # "pause" | "terminate"
    reason = models.CharField(max_length=300)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["action", "at"], name="policyaction_action_at_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.action} at {self.at:%Y-%m-%d %H:%M:%S}"
