"""Writing the audit log. Callers pass plain descriptions; secrets never reach here."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from rensei.models import AuditEvent, Channel, Organization


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
    label = user.get_username() if user is not None else channel
    return AuditEvent.objects.create(
        org=org,
        actor=user,  # type: ignore[misc]
        actor_label=label,
        action=action,
        target=target[:200],
        channel=channel,
        detail=detail or {},
    )
