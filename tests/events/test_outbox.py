"""The outbox: one row per emit, in the caller's transaction, numbered per session."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from events.models import Event
from events.outbox import emit, new_uid
from events.types import POOL_HEALTH_CHANGED, SESSION_CREATED, SESSION_RUNNING
from rensei.models import Organization


def test_session_events_are_numbered_per_session(org_a: Organization) -> None:
    emit(org_a.pk, SESSION_CREATED, {"id": 7}, session_id=7)
    emit(org_a.pk, SESSION_CREATED, {"id": 8}, session_id=8)
    emit(org_a.pk, SESSION_RUNNING, {"id": 7}, session_id=7)
    emit(org_a.pk, POOL_HEALTH_CHANGED, {"pool": "p"})
    rows = list(Event.objects.values_list("session_id", "sequence", "type"))
    assert rows == [
        (7, 1, SESSION_CREATED),
        (8, 1, SESSION_CREATED),
        (7, 2, SESSION_RUNNING),
        (None, None, POOL_HEALTH_CHANGED),
    ]
    event = Event.objects.get(session_id=7, sequence=2)
    assert event.org_id == org_a.pk and event.data == {"id": 7}
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.uid.version == 7 and event.position is None


def test_one_insert_in_the_callers_transaction(org_a: Organization) -> None:
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        emit(org_a.pk, SESSION_CREATED, {"id": 1}, session_id=1)
    writes = [q["sql"] for q in queries.captured_queries if "events_event" in q["sql"]]
    assert len(writes) == 1 and writes[0].upper().startswith("INSERT")


def test_a_rolled_back_change_emits_nothing(org_a: Organization) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        emit(org_a.pk, SESSION_CREATED, {"id": 1}, session_id=1)
        raise RuntimeError("the change failed")
    assert not Event.objects.exists()


def test_unknown_type_is_refused(org_a: Organization) -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        emit(org_a.pk, "session.exploded", {})


def test_uids_sort_by_time() -> None:
    from datetime import UTC, datetime

    early = new_uid(datetime(2026, 1, 1, tzinfo=UTC))
    late = new_uid(datetime(2026, 1, 2, tzinfo=UTC))
    assert early < late and early.variant == "specified in RFC 4122"
