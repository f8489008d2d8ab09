"""Retention and the beat jobs: 30 days of events, and drain/prune registered and scheduled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from events import endpoints
from events.models import Delivery, Event
from events.outbox import emit
from events.publish import publish
from events.tasks import DRAIN, PRUNE, prune
from events.types import POOL_HEALTH_CHANGED
from rensei.celery import app
from rensei.models import Channel, Organization

pytestmark = pytest.mark.django_db


def test_events_older_than_30_days_go_with_their_deliveries(org_a: Organization) -> None:
    endpoints.create_endpoint(org_a, url="http://127.0.0.1:9/h", channel=Channel.WEB)
    emit(org_a.pk, POOL_HEALTH_CHANGED, {"old": True})
    emit(org_a.pk, POOL_HEALTH_CHANGED, {"new": True})
    publish()
    Event.objects.filter(data__old=True).update(occurred_at=timezone.now() - timedelta(days=31))
    assert prune() == 2  # the event and its delivery
    assert list(Event.objects.values_list("data", flat=True)) == [{"new": True}]
    assert Delivery.objects.count() == 1


def test_beat_runs_the_drain_and_the_prune() -> None:
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert DRAIN in schedule and PRUNE in schedule
    options = schedule[DRAIN]["options"]
    assert (
        isinstance(options, dict) and options["expires"] <= 10
    )  # a backlog of drains never piles up
    assert DRAIN in app.tasks and PRUNE in app.tasks


@pytest.mark.django_db(transaction=True)
def test_two_writers_for_one_session_take_the_next_numbers(org_a: Organization) -> None:
    import threading

    from django.db import connection, transaction

    barrier = threading.Barrier(4)

    def write() -> None:
        try:
            barrier.wait()
            for _ in range(10):
                with transaction.atomic():
                    emit(org_a.pk, POOL_HEALTH_CHANGED, {}, session_id=77)
        finally:
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    numbers = sorted(
        n for n in Event.objects.filter(session_id=77).values_list("sequence", flat=True) if n
    )
    assert numbers == list(range(1, 41))
