"""The Django admin writes times as every page does: 24-hour, ISO dates, marked UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from rensei.models import AuditEvent


def test_admin_times_are_24_hour_and_utc(client, staff, org_a) -> None:  # type: ignore[no-untyped-def]
    event = AuditEvent.objects.create(org=org_a, action="pool.created", target="p")
    AuditEvent.objects.filter(pk=event.pk).update(
        created_at=datetime(2026, 3, 4, 15, 6, 7, tzinfo=UTC)
    )
    client.force_login(staff)
    body = client.get("/admin/rensei/auditevent/").content.decode()
    assert "2026-03-04 15:06:07 UTC" in body
    assert not re.search(r"\b[ap]\.m\.", body)
