"""Writing an event: one INSERT in the caller's transaction (the transactional outbox).

    emit(org_id, event_type, data, *, session_id=None) -> None

The row commits or rolls back with the change it describes, so a rolled-back change emits
nothing and a committed one cannot lose its event when a process dies afterwards. Delivery
happens later, from the table (events.publish, events.delivery).

A session's events carry a sequence number, 1, 2, 3…, taken in the same INSERT
(``INSERT … SELECT max(sequence) + 1``). Session state changes hold the session's row lock
(their conditional UPDATE), so they never race for a number; when two writers without it
do, the unique constraint on (session, sequence) makes the later one wait for the earlier
to commit and try again with the next number (``ON CONFLICT DO NOTHING``, no aborted
transaction), so numbers are gapless and in commit order per session.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from events.models import Event
from events.types import ALL_TYPES

_MAX_TRIES = 20


def new_uid(at: datetime | None = None) -> uuid.UUID:
    """A UUID version 7: time-ordered (milliseconds) then random, so ids sort by time."""
    ms = int((at.timestamp() if at else time.time()) * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """The payload as JSON has it (times as ISO strings, Decimals as strings, UUIDs…)."""
    plain: dict[str, Any] = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return plain


def emit(
    org_id: int,
    event_type: str,
    data: dict[str, Any],
    *,
    session_id: int | None = None,
    at: datetime | None = None,
) -> None:
    """Write one event in the current transaction (the caller's ``atomic`` block)."""
    if event_type not in ALL_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    occurred = at or timezone.now()
    fields = {f.name: f for f in Event._meta.concrete_fields}
    payload = _plain(data)
    if session_id is None:
        Event.objects.create(
            uid=new_uid(occurred),
            org_id=org_id,
            type=event_type,
            occurred_at=occurred,
            data=payload,
        )
        return
    values = [
        fields["uid"].get_db_prep_save(new_uid(occurred), connection),
        org_id,
        event_type,
        session_id,
        fields["occurred_at"].get_db_prep_save(occurred, connection),
        fields["data"].get_db_prep_save(payload, connection),
        session_id,
    ]
    table = connection.ops.quote_name(Event._meta.db_table)
    sql = (
        f"INSERT INTO {table} (uid, org_id, type, session_id, sequence, occurred_at, data) "
        f"SELECT %s, %s, %s, %s, COALESCE(MAX(sequence), 0) + 1, %s, %s FROM {table} "
        "WHERE session_id = %s "
        "ON CONFLICT (session_id, sequence) WHERE session_id IS NOT NULL DO NOTHING"
    )
    with connection.cursor() as cursor:
        for _ in range(_MAX_TRIES):
            cursor.execute(sql, values)
            if cursor.rowcount == 1:
                return
            # Another transaction took this number and has committed by now (the conflict
            # waited for it): the next statement's MAX sees it.
            values[0] = fields["uid"].get_db_prep_save(new_uid(occurred), connection)
    raise RuntimeError(f"could not number an event for session {session_id}")
