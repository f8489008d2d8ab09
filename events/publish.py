"""Publishing committed events: the feed's position, and one delivery per endpoint.

    publish(batch=500) -> int      # how many events it published

Positions are given in one serialised pass at a time (a transaction-scoped advisory lock on
PostgreSQL; SQLite's write lock, taken at BEGIN, on SQLite), only to events whose
transaction has committed. So positions grow in the order events became visible, and a feed
reader's cursor never passes an event that commits late; ids alone could (a transaction
that took id 41 may commit after the one that took 42).

An endpoint receives the events that occurred after it was made, of the types it chose,
while it is enabled. ``webhook.test`` events are made for one endpoint (by "Send test
event") and are neither fanned out nor in the feed.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from events.models import Delivery, Event, WebhookEndpoint
from events.types import WEBHOOK_TEST

LOCK_KEY = 0x52_45_4E_53_45_49  # "RENSEI"


def _serialise() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def publish(batch: int = 500) -> int:
    with transaction.atomic():
        _serialise()
        events = list(
            Event.objects.filter(position__isnull=True)
            .order_by("id")
            .only("id", "org_id", "type", "session_id", "sequence", "occurred_at")[:batch]
        )
        if not events:
            return 0
        top = Event.objects.aggregate(top=Max("position"))["top"] or 0
        orgs = {e.org_id for e in events}
        endpoints: dict[int, list[WebhookEndpoint]] = {}
        for endpoint in WebhookEndpoint.objects.filter(org_id__in=orgs, enabled=True).only(
            "id", "org_id", "event_types", "created_at"
        ):
            endpoints.setdefault(endpoint.org_id, []).append(endpoint)
        now = timezone.now()
        deliveries: list[Delivery] = []
        for offset, event in enumerate(events, start=1):
            event.position = top + offset
            if event.type == WEBHOOK_TEST:
                continue
            for endpoint in endpoints.get(event.org_id, []):
                if endpoint.receives(event.type) and event.occurred_at >= endpoint.created_at:
                    deliveries.append(
                        Delivery(
                            endpoint=endpoint,
                            event=event,
                            session_id=event.session_id,
                            sequence=event.sequence,
                            next_attempt_at=now,
                        )
                    )
        Event.objects.bulk_update(events, ["position"], batch_size=500)
        Delivery.objects.bulk_create(deliveries, batch_size=500, ignore_conflicts=True)
    return len(events)
