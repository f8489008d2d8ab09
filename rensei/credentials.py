"""Provider credentials: which one a job uses, and the only way to change them.

Resolution order for E2B: the org's credential (Settings → Integrations), else the
``E2B_API_KEY`` environment variable, else ``MissingCredential`` with a message that says
where to add one. The secret leaves this module only inside ``ResolvedCredential`` and is
never logged.

``set_credential`` / ``remove_credential`` are what the page, the Django admin and the demo
seeder call: they validate, encrypt, and write the audit event (last four only).
Functions holding a secret in a local are ``@sensitive_variables()``: error reports (admin
mails, error trackers) show frame locals, and never theirs nor those of what they call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import IntegrityError, models, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from rensei import audit, providers
from rensei.crypto import decrypt, encrypt
from rensei.models import Credential, Organization

ENV_FALLBACK = {"e2b": "E2B_API_KEY"}
M = TypeVar("M", bound=models.Model)

MIN_SECRET_LENGTH = 8
MAX_SECRET_LENGTH = 256
_PRINTABLE = re.compile(r"[\x21-\x7e]+")

Actor = AbstractBaseUser | AnonymousUser | None


def acting_user(actor: Actor) -> User | None:
    """The user to record in created_by/updated_by fields (None for anonymous, CLI, jobs)."""
    return cast(User, actor) if actor is not None and actor.is_authenticated else None


class MissingCredential(LookupError):
    pass


class InvalidSecret(ValueError):
    """The entered key is unusable. The message describes why and never repeats the key."""


@dataclass(frozen=True)
class ResolvedCredential:
    secret: str = field(repr=False)
    source: str  # "org" | "environment"
    last_four: str

    def describe(self) -> str:
        if self.source == "org":
            return f"the organisation's key ending ••••{self.last_four}"
        return "E2B_API_KEY from the server environment"


def provider_label(provider: str) -> str:
    return providers.label(provider)


@sensitive_variables()
def environment_secret(provider: str = "e2b") -> str:
    name = ENV_FALLBACK.get(provider)
    return str(getattr(settings, name, "") or "").strip() if name else ""


@sensitive_variables()
def resolve_credential(org: Organization, provider: str = "e2b") -> ResolvedCredential:
    row = Credential.objects.filter(org=org, provider=provider).first()
    if row is not None:
        return resolved(row.secret_encrypted, row.last_four, provider)
    return resolved(None, "", provider)


def with_credential(rows: QuerySet[M], org_ref: str, provider_ref: str) -> QuerySet[M]:
    """``rows`` annotated with their org's credential for their provider (still encrypted):
    ``credential_encrypted`` and ``credential_last_four``, None without one. A job reads
    its row and the key in one query; ``resolved`` turns the two into the credential."""
    cred = Credential.objects.filter(org_id=OuterRef(org_ref), provider=OuterRef(provider_ref))
    return rows.annotate(  # type: ignore[return-value]
        credential_encrypted=Subquery(cred.values("secret_encrypted")[:1]),
        credential_last_four=Subquery(cred.values("last_four")[:1]),
    )


@sensitive_variables()
def resolved(encrypted: str | None, last_four: str, provider: str = "e2b") -> ResolvedCredential:
    """The org's credential as stored (``encrypted``; None when it has none), else the
    environment's, else ``MissingCredential``: the resolution order of the module doc."""
    if encrypted is not None:
        return ResolvedCredential(secret=decrypt(encrypted), source="org", last_four=last_four)
    secret = environment_secret(provider)
    if secret:
        return ResolvedCredential(secret=secret, source="environment", last_four=secret[-4:])
    label = provider_label(provider)
    raise MissingCredential(
        f"No {label} credential: add one in Settings → Integrations "
        f"or set {ENV_FALLBACK.get(provider, 'the API key')} on the server."
    )


@sensitive_variables()
def validate_secret(raw: str, provider: str = "e2b") -> str:
    """The key without surrounding whitespace, or ``InvalidSecret``."""
    secret = (raw or "").strip()
    label = provider_label(provider)
    if not secret:
        raise InvalidSecret(f"Enter the {label} API key.")
    if any(ch.isspace() for ch in secret):
        raise InvalidSecret("The key must not contain spaces or line breaks.")
    if len(secret) > MAX_SECRET_LENGTH:
        raise InvalidSecret(
            f"That is too long for an {label} API key (at most {MAX_SECRET_LENGTH} characters)."
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidSecret(
            f"That is too short for an {label} API key (at least {MIN_SECRET_LENGTH} characters)."
        )
    if not _PRINTABLE.fullmatch(secret):
        raise InvalidSecret("The key may only contain printable ASCII characters.")
    return secret


def _known_provider(provider: str) -> str:
    if provider not in providers.kinds():
        raise LookupError(f"unknown provider {provider!r}")
    return provider


def _target(provider: str) -> str:
    return f"{provider_label(provider)} credential"


@sensitive_variables()
def set_credential(
    org: Organization, provider: str, secret: str, actor: Actor, channel: str
) -> Credential:
    """Add the org's key for ``provider``, or replace the one it has."""
    _known_provider(provider)
    secret = validate_secret(secret, provider)
    user = acting_user(actor)
    values: dict[str, Any] = {
        "secret_encrypted": encrypt(secret),
        "last_four": secret[-4:],
        "updated_by": user,
        # A new key has not been tested yet, whatever the old one's last test said.
        "last_tested_at": None,
        "last_test_ok": None,
    }
    with transaction.atomic():
        row = Credential.objects.select_for_update().filter(org=org, provider=provider).first()
        created = False
        if row is None:
            try:
                with transaction.atomic():
                    row = Credential.objects.create(
                        org=org, provider=provider, created_by=user, **values
                    )
                created = True
            except IntegrityError:  # someone added one a moment ago: replace theirs
                row = Credential.objects.select_for_update().get(org=org, provider=provider)
        if not created:
            for name, value in values.items():
                setattr(row, name, value)
            row.replaced_at = timezone.now()
            row.save()
        action = "credential.added" if created else "credential.replaced"
        audit.record(
            org=org,
            action=action,
            target=_target(provider),
            actor=actor,
            channel=channel,
            detail={"provider": provider, "last_four": row.last_four},
        )
    return row


def remove_credential(org: Organization, provider: str, actor: Actor, channel: str) -> bool:
    """Delete the org's key for ``provider``; False when it had none."""
    with transaction.atomic():
        row = Credential.objects.filter(org=org, provider=provider).first()
        if row is None:
            return False
        deleted, _ = Credential.objects.filter(pk=row.pk).delete()
        if not deleted:
            return False  # removed concurrently; that remover wrote the audit event
        audit.record(
            org=org,
            action="credential.removed",
            target=_target(provider),
            actor=actor,
            channel=channel,
            detail={"provider": provider, "last_four": row.last_four},
        )
    return True


def key_version(org: Organization, provider: str) -> tuple[int, datetime | None] | None:
    """Which saved key a test is about to use: (row id, replaced_at), or None for no row."""
    row = Credential.objects.filter(org=org, provider=provider).values("pk", "replaced_at").first()
    return (row["pk"], row["replaced_at"]) if row else None


def record_test(version: tuple[int, datetime | None] | None, ok: bool) -> bool:
    """Store a Test connection result on the key that was tested. Conditional: a key
    replaced while the test ran is a new, untested key and keeps no result."""
    if version is None:
        return False
    pk, replaced_at = version
    return bool(
        Credential.objects.filter(pk=pk, replaced_at=replaced_at).update(
            last_tested_at=timezone.now(), last_test_ok=ok
        )
    )


@dataclass(frozen=True)
class CredentialStatus:
    """What the Integrations card says about one provider, in words. Holds no secret."""

    provider: str
    label: str
    env_name: str
    credential: Credential | None
    env_configured: bool

    @property
    def source(self) -> str:
        if self.credential is not None:
            return "org"
        return "environment" if self.env_configured else "none"

    @property
    def test_state(self) -> str:
        """ "untested" | "ok" | "failed" for the org's key ("" without one)."""
        row = self.credential
        if row is None:
            return ""
        if row.last_test_ok is None:
            return "untested"
        return "ok" if row.last_test_ok else "failed"

    @property
    def badge(self) -> str:
        """The card's badge: "Connected" only once a Test connection passed."""
        return {
            "ok": "Connected",
            "failed": "Test failed",
            "untested": "Saved, not tested",
        }.get(self.test_state, "")

    @property
    def changed_by(self) -> str:
        row = self.credential
        if row is None:
            return ""
        user = row.updated_by if row.replaced_at else row.created_by
        return user.get_username() if user is not None else ""

    @property
    def changed_at(self) -> datetime | None:
        row = self.credential
        if row is None:
            return None
        return row.replaced_at or row.created_at

    def sentence(self) -> str:
        row = self.credential
        if row is not None:
            verb = "replaced" if row.replaced_at else "added"
            who = f" by {self.changed_by}" if self.changed_by else ""
            when = self.changed_at.strftime("%Y-%m-%d %H:%M UTC") if self.changed_at else ""
            saved = f"key ending ••••{row.last_four}, {verb}{who} on {when}"
            tested = row.last_tested_at.strftime("%Y-%m-%d %H:%M UTC") if row.last_tested_at else ""
            if self.test_state == "ok":
                return f"Connected: {saved}; test passed {tested}"
            if self.test_state == "failed":
                return f"Test failed: {saved}; tested {tested}"
            return f"Saved, not tested: {saved}"
        if self.env_configured:
            return f"Using {self.env_name} from the server environment"
        return "Not configured"


def credential_status(org: Organization, provider: str) -> CredentialStatus:
    row = (
        Credential.objects.filter(org=org, provider=provider)
        .select_related("created_by", "updated_by")
        .defer("secret_encrypted")
        .first()
    )
    return CredentialStatus(
        provider=provider,
        label=provider_label(provider),
        env_name=ENV_FALLBACK.get(provider, ""),
        credential=row,
        env_configured=bool(environment_secret(provider)),
    )
