"""Writing the audit log. Callers pass plain descriptions; secrets never reach here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from rensei.models import AuditEvent, Channel, Organization

# The API token a JSON API call authenticated with: its rows name it, not just "api".
_api_token: ContextVar[str] = ContextVar("audit_api_token", default="")


@contextmanager
def acting_token(name: str) -> Iterator[None]:
    """Within this block, API-channel rows without a user are labelled with the token."""
    reset = _api_token.set(name)
    try:
        yield
    finally:
        _api_token.reset(reset)


def actor_label(actor: AbstractBaseUser | AnonymousUser | None, channel: str) -> str:
    """Who did it, in words: the username, "API token <name>", or the channel."""
    if actor is not None and actor.is_authenticated:
        return actor.get_username()
    token = _api_token.get()
    if token and channel == Channel.API:
        return f"API token {token}"[:150]
    return channel


def record(
    *,
    org: Organization | None,
    action: str,
    target: str = "",
    actor: AbstractBaseUser | AnonymousUser | None = None,
    channel: str = Channel.WEB,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    user = actor if actor is not None and actor.is_authenticated else None
    label = actor_label(actor, channel)
    return AuditEvent.objects.create(
        org=org,
        actor=user,  # type: ignore[misc]
        actor_label=label,
        action=action,
        target=target[:200],
        channel=channel,
        detail=detail or {},
    )
