"""Webhook endpoints: what the Settings → Webhooks pages and the API both call.

Every change is audited (never with the secret). The signing secret is made here, stored
encrypted, and returned once to the caller that made or rotated it; only its last four
characters are kept in clear, for display.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from events import egress, outbox, signing
from events.models import Delivery, DeliveryState, Event, WebhookEndpoint
from events.types import WEBHOOK_TEST, validate_types
from rensei import crypto
from rensei.audit import record
from rensei.models import Organization

MAX_DESCRIPTION = 200
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)


class InvalidEndpoint(ValueError):
    """Bad input for an endpoint; ``field`` names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def clean(url: str, event_types: Iterable[str], description: str = "") -> dict[str, Any]:
    url = (url or "").strip()
    if not url:
        raise InvalidEndpoint("url", "Give the URL that receives the events.")
    try:
        egress.check(url)
    except egress.UnsafeUrl as exc:
        raise InvalidEndpoint("url", str(exc)) from None
    try:
        types = validate_types(list(event_types))
    except ValueError as exc:
        raise InvalidEndpoint("event_types", str(exc)) from None
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise InvalidEndpoint(
            "description", f"The description is too long (at most {MAX_DESCRIPTION} characters)."
        )
    return {"url": url, "event_types": types, "description": description}


def _target(endpoint: WebhookEndpoint) -> str:
    return f"webhook {endpoint.pk} {endpoint.url}"[:200]


@sensitive_variables()
def create_endpoint(
    org: Organization,
    *,
    url: str,
    event_types: Iterable[str] = (),
    description: str = "",
    enabled: bool = True,
    actor: Any = None,
    channel: str,
) -> tuple[WebhookEndpoint, str]:
    """(the endpoint, its signing secret: shown once)."""
    values = clean(url, event_types, description)
    secret = signing.new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            org=org,
            enabled=enabled,
            secret_encrypted=crypto.encrypt(secret),
            secret_last4=secret[-4:],
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            **values,
        )
        record(
            org=org,
            action="webhook.created",
            target=_target(endpoint),
            actor=actor,
            channel=channel,
            detail={"event_types": values["event_types"] or ["all"]},
        )
    return endpoint, secret


def update_endpoint(
    endpoint: WebhookEndpoint,
    *,
    url: str,
    event_types: Iterable[str],
    description: str,
    enabled: bool,
    actor: Any = None,
    channel: str,
) -> WebhookEndpoint:
    values = clean(url, event_types, description)
    with transaction.atomic():
        changed = [k for k, v in values.items() if getattr(endpoint, k) != v]
        if enabled != endpoint.enabled:
            changed.append("enabled")
        for name, value in values.items():
            setattr(endpoint, name, value)
        if enabled and not endpoint.enabled:
            endpoint.consecutive_failures = 0
            endpoint.disabled_reason = ""
        endpoint.enabled = enabled
        endpoint.save()
        if changed:
            record(
                org=endpoint.org,
                action="webhook.updated",
                target=_target(endpoint),
                actor=actor,
                channel=channel,
                detail={"changed": changed},
            )
    return endpoint


def set_enabled(endpoint: WebhookEndpoint, enabled: bool, *, actor: Any, channel: str) -> None:
    with transaction.atomic():
        fields: dict[str, Any] = {"enabled": enabled}
        if enabled:
            fields.update(consecutive_failures=0, disabled_reason="")
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(**fields)
        for name, value in fields.items():
            setattr(endpoint, name, value)
        record(
            org=endpoint.org,
            action="webhook.enabled" if enabled else "webhook.disabled",
            target=_target(endpoint),
            actor=actor,
            channel=channel,
        )


@sensitive_variables()
def rotate_secret(
    endpoint: WebhookEndpoint, *, overlap: timedelta = DEFAULT_OVERLAP, actor: Any, channel: str
) -> str:
    """A new secret (returned once); the old one keeps signing beside it for ``overlap``."""
    if overlap < timedelta(0) or overlap > MAX_OVERLAP:
        raise InvalidEndpoint("overlap_hours", "The overlap is 0 to 168 hours.")
    secret = signing.new_secret()
    with transaction.atomic():
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted if overlap else ""
        endpoint.previous_secret_until = timezone.now() + overlap if overlap else None
        endpoint.secret_encrypted = crypto.encrypt(secret)
        endpoint.secret_last4 = secret[-4:]
        endpoint.save()
        record(
            org=endpoint.org,
            action="webhook.secret_rotated",
            target=_target(endpoint),
            actor=actor,
            channel=channel,
            detail={"overlap_hours": int(overlap.total_seconds() // 3600)},
        )
    return secret


def delete_endpoint(endpoint: WebhookEndpoint, *, actor: Any, channel: str) -> None:
    with transaction.atomic():
        record(
            org=endpoint.org,
            action="webhook.deleted",
            target=_target(endpoint),
            actor=actor,
            channel=channel,
        )
        endpoint.delete()


def redeliver(delivery: Delivery, *, actor: Any, channel: str) -> bool:
    """Send a delivered or failed event again (same id); False when it is still pending."""
    with transaction.atomic():
        won = (
            Delivery.objects.filter(pk=delivery.pk)
            .exclude(state=DeliveryState.PENDING)
            .update(
                state=DeliveryState.PENDING,
                next_attempt_at=timezone.now(),
                first_attempt_at=None,
                claimed_until=None,
            )
        )
        if won:
            record(
                org=delivery.endpoint.org,
                action="webhook.redelivered",
                target=_target(delivery.endpoint),
                actor=actor,
                channel=channel,
                detail={"event": str(delivery.event.uid)},
            )
    return bool(won)


def send_test(endpoint: WebhookEndpoint, *, actor: Any, channel: str) -> Delivery:
    """A ``webhook.test`` event for this endpoint alone, sent by the delivery job."""
    with transaction.atomic():
        outbox.emit(
            endpoint.org_id,
            WEBHOOK_TEST,
            {"endpoint": {"id": endpoint.pk, "url": endpoint.url}},
        )
        event = Event.objects.filter(org_id=endpoint.org_id, type=WEBHOOK_TEST).latest("id")
        delivery = Delivery.objects.create(
            endpoint=endpoint, event=event, next_attempt_at=timezone.now()
        )
        record(
            org=endpoint.org,
            action="webhook.test_sent",
            target=_target(endpoint),
            actor=actor,
            channel=channel,
        )
    return delivery
