"""The JSON API's schemas for the event feed and webhook endpoints (sessions/api_events.py).

Same conventions as sessions/schemas.py: strict input (unknown fields refused), the product's
messages, and an OpenAPI document generated from what is enforced.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from ninja import Schema
from pydantic import Field, WithJsonSchema

from events.egress import MAX_URL_LENGTH, URL_PATTERN
from events.endpoints import MAX_DESCRIPTION
from events.models import DeliveryState
from events.types import EVENT_TYPES
from rensei import inputs as inp
from sessions.schemas import Input, _absent_not_null


def _row_id(description: str) -> Any:
    # Documented from 1 up; a smaller or larger id is simply not found (404).
    return Annotated[
        int,
        WithJsonSchema(
            {"type": "integer", "minimum": 1, "format": "int64", "description": description}
        ),
    ]


if TYPE_CHECKING:
    EventTypeName = str
    DeliveryStateName = str
    WebhookId = int
    DeliveryId = int
else:
    EventTypeName = Literal[tuple(EVENT_TYPES)]
    DeliveryStateName = Literal[tuple(DeliveryState.values)]
    WebhookId = _row_id("The webhook endpoint's id. Another org's id answers 404.")
    DeliveryId = _row_id("A delivery's id within this endpoint.")
MAX_FEED_LIMIT = 500
TYPES_HELP = "Comma-separated event types to keep, e.g. `session.ended,sandbox.cost`."
_ONE_TYPE = "(" + "|".join(re.escape(t) for t in EVENT_TYPES) + ")"
TYPES_PATTERN = f"^{_ONE_TYPE}(,{_ONE_TYPE})*$"


def _types_schema(schema: dict[str, Any]) -> None:
    _absent_not_null(schema)
    schema["pattern"] = TYPES_PATTERN


# --- the feed ------------------------------------------------------------------------------


class FeedFilters(Schema):
    after: int | None = Field(
        None,
        ge=0,
        le=inp.MAX_ID,
        description="`next_cursor` from the previous page; absent: from the oldest retained.",
        json_schema_extra=_absent_not_null,
    )
    types: str | None = Field(
        None, max_length=2000, description=TYPES_HELP, json_schema_extra=_types_schema
    )
    limit: int = Field(100, ge=1, le=MAX_FEED_LIMIT)


class Event(Schema):
    id: UUID = Field(description="Stable across redeliveries: dedupe by it.")
    type: str
    occurred_at: datetime = Field(description="UTC.")
    org: str = Field(description="The org's slug.")
    session_id: int | None
    sequence: int | None = Field(
        description="1, 2, 3… per session, without gaps; null for events without a session."
    )
    data: dict[str, Any] = Field(description="The object as the API shows it (docs/events.md).")


class EventPage(Schema):
    results: list[Event]
    next_cursor: int = Field(
        description="Pass as `after` next time. The same value when nothing new has come: "
        "poll again later with it."
    )
    has_more: bool = Field(description="True when more events are ready now.")


# --- webhook endpoints ---------------------------------------------------------------------

WebhookUrl = inp.Text(
    MAX_URL_LENGTH,
    1,
    pattern=URL_PATTERN,
    description="http(s) URL that receives the POSTs, on a public address (private, "
    "link-local and metadata addresses are refused, also after DNS resolution).",
)
Description = inp.Text(MAX_DESCRIPTION, description="What it is for.")


class WebhookCreate(Input):
    url: WebhookUrl  # type: ignore[valid-type]
    event_types: list[EventTypeName] = Field(
        default_factory=list, description="The types it receives; empty: every type."
    )
    description: Description = ""  # type: ignore[valid-type]
    enabled: bool = True


class WebhookUpdate(Input):
    url: WebhookUrl | None = None  # type: ignore[valid-type]
    event_types: list[EventTypeName] | None = None
    description: Description | None = None  # type: ignore[valid-type]
    enabled: bool | None = None


class RotateSecret(Input):
    overlap_hours: int = Field(
        24, ge=0, le=168, description="Hours the old secret keeps signing beside the new one."
    )


class Webhook(Schema):
    id: int
    url: str
    description: str
    event_types: list[str] = Field(description="Empty: every type.")
    enabled: bool
    disabled_reason: str = Field(description="Why it was disabled by itself, if it was.")
    secret_last4: str = Field(description="The signing secret's last four characters.")
    previous_secret_until: datetime | None = Field(
        description="Until when the previous secret also signs (after a rotation)."
    )
    consecutive_failures: int
    created_at: datetime


class WebhookWithSecret(Webhook):
    secret: str = Field(description="The signing secret. Shown this once: store it now.")


class WebhookList(Schema):
    results: list[Webhook]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page.")


class WebhookFilters(Schema):
    limit: int = Field(50, ge=1, le=100)
    cursor: int | None = Field(
        None, ge=1, le=inp.MAX_ID, json_schema_extra=_absent_not_null, description="Paging."
    )


class Delivery(Schema):
    id: int
    event: Event
    state: DeliveryStateName
    attempts: int
    last_status_code: int | None
    next_attempt_at: datetime | None = Field(description="Null once delivered or failed.")
    delivered_at: datetime | None
    created_at: datetime


class DeliveryList(Schema):
    results: list[Delivery]
    next_cursor: int | None = Field(description="Pass as `cursor` for older deliveries.")


class DeliveryFilters(Schema):
    limit: int = Field(25, ge=1, le=100)
    cursor: int | None = Field(
        None, ge=1, le=inp.MAX_ID, json_schema_extra=_absent_not_null, description="Paging."
    )
