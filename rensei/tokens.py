"""Org API tokens for the JSON API.

A token looks like ``rsn_<prefix8>_<secret>``. Only its SHA-256 hash is stored, with the
``rsn_<prefix8>`` part kept for display; the full token is shown once, when created.
``authenticate`` finds the token by its hash, so the lookup never compares secrets
character by character.

A token has scopes (what it may do: read sessions, act on them, run commands in them) and
an optional last day (UTC) after which it stops working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from rensei import audit
from rensei.credentials import Actor, acting_user
from rensei.models import ApiToken, Organization

SCHEME = "rsn"
PREFIX_LENGTH = 8
MAX_NAME_LENGTH = 100
MAX_TOKEN_LENGTH = 200
# last_used_at is a hint for admins, not an access log: one write a minute per token at most,
# so a busy dispatcher does not turn every API call into an UPDATE.
LAST_USED_PRECISION = timedelta(minutes=1)
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits

READ = "sessions:read"
WRITE = "sessions:write"
EXEC = "sessions:exec"
EVENTS_READ = "events:read"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_WRITE = "webhooks:write"
# Every scope, in display order, with what it lets a token do.
SCOPES: dict[str, str] = {
    READ: "read sessions and command runs",
    WRITE: "create, pause, resume and terminate sessions",
    EXEC: "run commands in sessions' sandboxes",
    EVENTS_READ: "read the event feed",
    WEBHOOKS_READ: "read webhook endpoints and their deliveries",
    WEBHOOKS_WRITE: "create, change and delete webhook endpoints, rotate their secrets",
}
# Running commands in a sandbox is opt-in: a new token can read and act on sessions only.
DEFAULT_SCOPES = (READ, WRITE)
MAX_EXPIRY_DAYS = 3660


class InvalidTokenName(ValueError):
    pass


class InvalidScopes(ValueError):
    pass


@dataclass(frozen=True)
class Refusal:
    """Why a token that exists may not make this call: 401 (expired) or 403 (scope)."""

    status: int
    message: str
    missing_scope: str = ""


def validate_scopes(raw: Iterable[str]) -> list[str]:
    chosen = {str(s).strip() for s in raw}
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        raise InvalidScopes(f"Unknown scope {unknown[0][:40]!r}. Scopes are: {', '.join(SCOPES)}.")
    if not chosen:
        raise InvalidScopes("Choose at least one scope.")
    return [s for s in SCOPES if s in chosen]


def validate_expiry(day: date | None, today: date | None = None) -> date | None:
    if day is None:
        return None
    today = today or timezone.now().date()
    if day < today:
        raise InvalidScopes("The last day cannot be in the past.")
    if day > today + timedelta(days=MAX_EXPIRY_DAYS):
        raise InvalidScopes("The last day is too far ahead (at most ten years).")
    return day


def is_expired(token: ApiToken, today: date | None = None) -> bool:
    """Past its last day (UTC): the token worked through ``expires_on`` and no longer."""
    if token.expires_on is None:
        return False
    return (today or timezone.now().date()) > token.expires_on


def refusal(token: ApiToken, scope: str) -> Refusal | None:
    """None when ``token`` may make a call that needs ``scope``."""
    if is_expired(token):
        return Refusal(401, "token expired")
    if scope and scope not in (token.scopes or []):
        return Refusal(403, f"This token lacks the {scope} scope.", scope)
    return None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_name(raw: str) -> str:
    name = (raw or "").strip()
    if not name:
        raise InvalidTokenName("Give the token a name (what will use it).")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidTokenName(f"The name is too long (at most {MAX_NAME_LENGTH} characters).")
    return name


def _new_token() -> tuple[str, str]:
    """(display prefix, full token)."""
    short = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    prefix = f"{SCHEME}_{short}"
    return prefix, f"{prefix}_{secrets.token_urlsafe(32)}"


@sensitive_variables()
def create_token(
    org: Organization,
    name: str,
    actor: Actor,
    channel: str,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    expires_on: date | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``org``; the plaintext is returned here and never again."""
    name = validate_name(name)
    chosen = validate_scopes(scopes)
    expires_on = validate_expiry(expires_on)
    user = acting_user(actor)
    prefix, plaintext = _new_token()
    with transaction.atomic():
        token = ApiToken.objects.create(
            org=org,
            name=name,
            prefix=prefix,
            token_hash=hash_token(plaintext),
            created_by=user,
            scopes=chosen,
            expires_on=expires_on,
        )
        audit.record(
            org=org,
            action="token.created",
            target=f"API token {name} ({prefix}…)",
            actor=actor,
            channel=channel,
            detail={
                "token_id": token.pk,
                "prefix": prefix,
                "scopes": chosen,
                "expires_on": expires_on.isoformat() if expires_on else None,
            },
        )
    return token, plaintext


@sensitive_variables()
def _parse(header_value: str) -> str | None:
    scheme, _, token = (header_value or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    if not token.startswith(f"{SCHEME}_") or token.count("_") < 2:
        return None
    return token


@sensitive_variables()
def authenticate(header_value: str) -> ApiToken | None:
    """The live token an ``Authorization: Bearer …`` header names, else None."""
    token = _parse(header_value)
    if token is None:
        return None
    digest = hash_token(token)
    row = ApiToken.objects.select_related("org").filter(token_hash=digest).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.is_revoked:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION:
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_PRECISION)
        ApiToken.objects.filter(stale, pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def revoke(token: ApiToken, actor: Actor, channel: str) -> bool:
    """Revoke ``token``; False when it already was (the earlier revoker wrote the audit)."""
    user = acting_user(actor)
    now = timezone.now()
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=user
        )
        if not changed:
            return False
        token.revoked_at, token.revoked_by = now, user
        audit.record(
            org=token.org,
            action="token.revoked",
            target=f"API token {token.name} ({token.prefix}…)",
            actor=actor,
            channel=channel,
            detail={"token_id": token.pk, "prefix": token.prefix},
        )
    return True
