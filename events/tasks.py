"""The events app's Celery jobs (beat runs both; see CELERY_BEAT_SCHEDULE).

``drain`` publishes committed events and sends due deliveries for up to 20 s; beat starts it
every ``RENSEI_WEBHOOK_DRAIN_EVERY`` seconds with a short expiry, so a backlog of drains never
piles up in the broker. Several at once are safe (claims, events.delivery). ``prune`` keeps
the last ``RENSEI_EVENTS_RETENTION_DAYS`` (30) days of events and their deliveries.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from events.delivery import deliver_due
from events.models import Event
from events.publish import publish

DRAIN = "events.tasks.drain"
PRUNE = "events.tasks.prune"


def drain_once(budget_seconds: float = 20.0) -> int:
    for _ in range(20):  # up to 10,000 events a pass; the next drain takes the rest
        if not publish():
            break
    return deliver_due(budget_seconds=budget_seconds)


@shared_task(name=DRAIN)
def drain() -> int:
    return drain_once()


@shared_task(name=PRUNE)
def prune() -> int:
    days = int(getattr(settings, "RENSEI_EVENTS_RETENTION_DAYS", 30))
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = Event.objects.filter(occurred_at__lt=cutoff).delete()
    return deleted
