"""/metrics: outbox lag (the oldest event the publisher has not yet placed in the feed) and
webhook lag (the oldest event with a delivery still pending), 0 when nothing waits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from events.models import Delivery, DeliveryState, Event, WebhookEndpoint
from rensei.models import Organization

pytestmark = pytest.mark.django_db


def _value(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])


def test_outbox_and_webhook_lag(client: Client, settings, org_a: Organization) -> None:  # type: ignore[no-untyped-def]
    settings.RENSEI_METRICS_TOKEN = ""
    settings.DEBUG = True
    text = client.get("/metrics").content.decode()
    assert _value(text, "rensei_outbox_lag_seconds") == 0.0
    assert _value(text, "rensei_webhook_lag_seconds") == 0.0

    now = timezone.now()
    old = Event.objects.create(
        org=org_a, type="session.created", occurred_at=now - timedelta(seconds=90)
    )
    Event.objects.create(org=org_a, type="session.created", occurred_at=now - timedelta(seconds=5))
    published = Event.objects.create(
        org=org_a, type="session.running", occurred_at=now - timedelta(seconds=40), position=1
    )
    endpoint = WebhookEndpoint.objects.create(
        org=org_a, url="https://hooks.example.com/x", secret_encrypted="x", secret_last4="abcd"
    )
    Delivery.objects.create(endpoint=endpoint, event=published, next_attempt_at=now)
    text = client.get("/metrics").content.decode()
    assert 90 <= _value(text, "rensei_outbox_lag_seconds") < 150
    assert 40 <= _value(text, "rensei_webhook_lag_seconds") < 100
    assert 'rensei_outbox_undelivered{stage="unpublished"} 2.0' in text
    assert 'rensei_outbox_undelivered{stage="delivery_pending"} 1.0' in text

    Event.objects.filter(pk=old.pk).update(position=2)
    Delivery.objects.update(state=DeliveryState.DELIVERED)
    text = client.get("/metrics").content.decode()
    assert _value(text, "rensei_outbox_lag_seconds") < 60
    assert _value(text, "rensei_webhook_lag_seconds") == 0.0
