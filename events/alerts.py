"""Telling an org's admins that an endpoint was disabled after failing too often.

An audit row (the admin's audit log and the endpoint's page show it), a WARNING in the log,
and an email to the org's admins sent once the transaction commits. Never the secret.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from events.models import WebhookEndpoint
from rensei import ops
from rensei.audit import record
from rensei.models import Channel, Membership, Role

log = logging.getLogger(__name__)


def admin_emails(org_id: int) -> list[str]:
    return sorted(
        set(
            Membership.objects.filter(org_id=org_id, role=Role.ADMIN)
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )


def endpoint_disabled(endpoint: WebhookEndpoint, reason: str) -> None:
    log.warning("webhook endpoint %s disabled: %s", endpoint.pk, reason)
    ops.bump(ops.ALERT, "webhook_disabled")
    record(
        org=endpoint.org,
        action="webhook.disabled",
        target=f"webhook {endpoint.pk} {endpoint.url}"[:200],
        channel=Channel.JOB,
        detail={"reason": reason},
    )
    recipients = admin_emails(endpoint.org_id)
    if not recipients:
        return
    subject = "Rensei: a webhook endpoint was disabled"
    message = (
        f"The webhook endpoint {endpoint.url} was disabled: {reason}\n"
        "Its events wait in the feed (GET /api/v1/events). Enable it again in "
        "Settings → Webhooks once the receiver answers."
    )

    def send() -> None:
        try:
            send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:
            log.warning("could not email the webhook alert", exc_info=True)

    transaction.on_commit(send)
