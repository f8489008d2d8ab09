"""The core domain every app leans on: organisations, memberships and roles, the audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Organization(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    FINANCE = "finance", "Finance"
    MEMBER = "member", "Member"


# What each role may do. Views ask `membership.can(<capability>)` through rensei.access;
# navigation is drawn from the same table so a link never leads to a 403.
CAPABILITIES: dict[str, frozenset[str]] = {
    "integrations.manage": frozenset({Role.ADMIN}),
    "capacity.view": frozenset({Role.ADMIN, Role.MEMBER}),
    "capacity.manage": frozenset({Role.ADMIN}),
    "sessions.view": frozenset({Role.ADMIN, Role.MEMBER, Role.FINANCE}),
    "sessions.manage": frozenset({Role.ADMIN}),
    "billing.view": frozenset({Role.ADMIN, Role.FINANCE}),
    "budgets.view": frozenset({Role.ADMIN, Role.FINANCE}),
    "budgets.manage": frozenset({Role.ADMIN}),
}


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["org__name"]
        constraints = [
            # One role per person per org; the org switcher lists a user's memberships.
            models.UniqueConstraint(fields=["user", "org"], name="membership_unique_user_org"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.org} ({self.role})"

    def can(self, capability: str) -> bool:
        return self.role in CAPABILITIES[capability]


class Channel(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    JOB = "job", "Job"
    ADMIN = "admin", "Admin"
    CLI = "cli", "CLI"


class AuditEvent(models.Model):
    """Who did what to which object, through which channel. Never holds a secret."""

    org = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_events", null=True
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=200, blank=True)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEB)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Integrations page: the org's latest events.
            models.Index(fields=["org", "-created_at"], name="audit_org_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label or 'system'} {self.action} {self.target}"


class Credential(models.Model):
    """An org's provider credential. The secret is stored encrypted (see rensei.crypto);
    only its last four characters are ever shown."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="credentials")
    provider = models.CharField(max_length=32, default="e2b")
    secret_encrypted = models.TextField()
    last_four = models.CharField(max_length=4)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)
    # Set when a key replaced an earlier one, so the page can say "replaced by … on …"
    # (updated_at also moves when rotate_credentials re-encrypts, which is not a replacement).
    replaced_at = models.DateTimeField(null=True, blank=True)
    # The last "Test connection" of this key: a saved key is not "Connected" until a test
    # passed. Saving a new key clears both (it has not been tested yet).
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)

    class Meta:
        constraints = [
            # One credential per provider per org; resolution reads it by (org, provider).
            models.UniqueConstraint(
                fields=["org", "provider"], name="credential_unique_org_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} key ••••{self.last_four} ({self.org})"


class ApiToken(models.Model):
    """A bearer token for the JSON API. Only a SHA-256 hash is stored; the token is shown
    once at creation. ``prefix`` (the first characters) identifies it in lists."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # What the token may do (rensei/tokens.py SCOPES), e.g. ["sessions:read", "sessions:write"].
    scopes = models.JSONField(default=list, blank=True)
    # Last day (UTC) the token works; none: it works until revoked.
    expires_on = models.DateField(null=True, blank=True)
    # Made before scopes existed: it was given every scope by the migration.
    predates_scopes = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # API tokens page: the org's tokens, newest first.
            models.Index(fields=["org", "-created_at"], name="apitoken_org_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class OpsCounter(models.Model):
    """A cross-process counter for /metrics (every worker process adds to the same row):
    ``kind`` names the metric (``job_retry``, ``provider_error``), ``key`` its label value."""

    kind = models.CharField(max_length=40)
    key = models.CharField(max_length=100)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="opscounter_kind_key")]

    def __str__(self) -> str:
        return f"{self.kind}[{self.key}]={self.value}"


class Lease(models.Model):
    """A named lock with an expiry, taken by insert or conditional update: one reconcile pass
    per org, one daily accrual, however many beat schedulers or workers run. The expiry frees
    a lease whose holder died without releasing it."""

    name = models.CharField(max_length=100, unique=True)
    holder = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} (held by {self.holder} until {self.expires_at:%H:%M:%S})"
