"""Small display filters for the session pages: UTC times and durations; the queue tag."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from sessions.queue import queue_status as status_of

if TYPE_CHECKING:
    from sessions.models import Session

register = template.Library()


@register.filter
def utc(value: datetime | None) -> SafeString | str:
    """``2025-03-01 14:02:07 UTC`` in a <time> element; an em dash when there is no time."""
    if value is None:
        return "—"
    value = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}">{} UTC</time>',
        value.isoformat(timespec="seconds").replace("+00:00", "Z"),
        value.strftime("%Y-%m-%d %H:%M:%S"),
    )


@register.filter
def duration(seconds: float | int | None) -> str:
    """``2 h 05 min``, ``3 min 07 s``, ``12 s``."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@register.filter
def memory(megabytes: int | None) -> str:
    """``512 MiB``, ``2 GiB``."""
    if megabytes is None:
        return "—"
    if megabytes >= 1024 and megabytes % 1024 == 0:
        return f"{megabytes // 1024} GiB"
    return f"{megabytes} MiB"


@register.inclusion_tag("sessions/_queue_status.html")
def queue_status(session: Session) -> dict[str, Any]:
    """``{% queue_status session %}``: why a waiting session waits and its place in line
    (nothing when it does not wait). The same words as the API's ``queue`` field."""
    return {"queue": status_of(session), "session": session}
