"""Org API tokens for the JSON API.

A token looks like ``rsn_<prefix8>_<secret>``. Only its SHA-256 hash is stored, with the
``rsn_<prefix8>`` part kept for display; the full token is shown once, when created.
``authenticate`` finds the token by its hash, so the lookup never compares secrets
character by character.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from datetime import timedelta

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


class InvalidTokenName(ValueError):
    pass


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
def create_token(org: Organization, name: str, actor: Actor, channel: str) -> tuple[ApiToken, str]:
    """A new token for ``org``; the plaintext is returned here and never again."""
    name = validate_name(name)
    user = acting_user(actor)
    prefix, plaintext = _new_token()
    with transaction.atomic():
        token = ApiToken.objects.create(
            org=org, name=name, prefix=prefix, token_hash=hash_token(plaintext), created_by=user
        )
        audit.record(
            org=org,
            action="token.created",
            target=f"API token {name} ({prefix}…)",
            actor=actor,
            channel=channel,
            detail={"token_id": token.pk, "prefix": prefix},
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
