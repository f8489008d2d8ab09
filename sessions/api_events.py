"""The JSON API's event feed and webhook endpoints (mounted by sessions/api_urls.py).

    GET  /api/v1/events?after=&types=&limit=          events:read
    GET  /api/v1/webhooks, GET …/{id}, …/{id}/deliveries      webhooks:read
    POST /api/v1/webhooks, PATCH/DELETE …/{id}, POST …/{id}/rotate-secret, …/{id}/test,
         …/{id}/deliveries/{delivery_id}/redeliver    webhooks:write

The feed's cursor is the publisher's position (events.publish), so a poller that passes
``next_cursor`` back never misses an event that committed late. Another org's endpoints and
deliveries answer 404; the feed only ever lists the token's org. The signing secret is in the
answer to create and rotate only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Path, Query, Status

from events import endpoints as ep
from events.delivery import envelope
from events.models import Delivery, DeliveryState, Event, WebhookEndpoint
from events.types import WEBHOOK_TEST, UnknownEventType, validate_types
from rensei import inputs as inp
from rensei.models import Channel
from sessions import schemas_events as sc
from sessions.api_base import ApiRouter, BearerToken, bad_query, described, org_of
from sessions.api_errors import error
from sessions.schemas import Error

router = ApiRouter(auth=BearerToken())
ERRORS = {400: Error, 401: Error, 403: Error}
NOT_FOUND = {"description": "No such webhook endpoint (or delivery) in the token's org."}
EVENTS_READ = "events:read"
HOOKS_READ = "webhooks:read"
HOOKS_WRITE = "webhooks:write"


def webhook_json(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": endpoint.pk,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types or []),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "secret_last4": endpoint.secret_last4,
        "previous_secret_until": endpoint.previous_secret_until,
        "consecutive_failures": endpoint.consecutive_failures,
        "created_at": endpoint.created_at,
    }
    if secret is not None:
        body["secret"] = secret
    return body


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "event": envelope(delivery.event),
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "next_attempt_at": (
            delivery.next_attempt_at if delivery.state == DeliveryState.PENDING else None
        ),
        "delivered_at": delivery.delivered_at,
        "created_at": delivery.created_at,
    }


def _endpoint(request: HttpRequest, webhook_id: int) -> WebhookEndpoint | None:
    if webhook_id > inp.MAX_ID:
        return None
    return (
        WebhookEndpoint.objects.select_related("org").filter(org=org_of(request), pk=webhook_id)
    ).first()


def _not_found() -> HttpResponse:
    return error(404, "No such webhook endpoint.")


def _invalid(exc: ep.InvalidEndpoint) -> HttpResponse:
    return error(400, exc.message, {exc.field: exc.message})


# --- the feed ------------------------------------------------------------------------------


@router.get(
    "/events",
    url_name="api_events",
    operation_id="listEvents",
    summary="The event feed, oldest first after a cursor",
    description="Events of the token's org in the order they were published, retained 30 "
    "days. Poll with `after=<next_cursor>`; each event's `id` is stable (dedupe by it).",
    tags=["events"],
    response={200: sc.EventPage, **ERRORS},
    openapi_extra=described(
        EVENTS_READ,
        s200={"description": "A page of events (possibly empty)."},
        s400=bad_query("A query parameter is invalid or unknown (`types` names a bad type)."),
    ),
)
def list_events(request: HttpRequest, filters: Query[sc.FeedFilters]) -> Any:
    events = (
        Event.objects.filter(org=org_of(request), position__isnull=False)
        .exclude(type=WEBHOOK_TEST)
        .select_related("org")
        .order_by("position")
    )
    if filters.types:
        names = filters.types.split(",")
        try:
            events = events.filter(type__in=validate_types(names))
        except UnknownEventType as exc:
            return error(400, str(exc), {"types": str(exc)})
    after = filters.after or 0
    rows = list(events.filter(position__gt=after)[: filters.limit + 1])
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    return {
        "results": [envelope(e) for e in rows],
        "next_cursor": rows[-1].position if rows else after,
        "has_more": more,
    }


# --- endpoints -----------------------------------------------------------------------------


@router.get(
    "/webhooks",
    url_name="api_webhooks",
    operation_id="listWebhooks",
    summary="List webhook endpoints",
    tags=["webhooks"],
    response={200: sc.WebhookList, **ERRORS},
    openapi_extra=described(
        HOOKS_READ,
        s200={"description": "A page of the org's endpoints, oldest first."},
        s400=bad_query("A query parameter is invalid or unknown."),
    ),
)
def list_webhooks(request: HttpRequest, filters: Query[sc.WebhookFilters]) -> Any:
    found = WebhookEndpoint.objects.filter(org=org_of(request)).order_by("id")
    if filters.cursor:
        found = found.filter(pk__gt=filters.cursor)
    return _id_page(found, filters.limit, webhook_json)


@router.post(
    "/webhooks",
    url_name="api_webhooks",
    operation_id="createWebhook",
    summary="Create a webhook endpoint",
    description="The answer carries the signing secret, this once.",
    tags=["webhooks"],
    response={201: sc.WebhookWithSecret, **ERRORS},
    openapi_extra=described(
        HOOKS_WRITE,
        s201={"description": "Created; `secret` is shown this once."},
        s400=bad_query(
            "A field is missing or refused: a URL that is not http(s), points at a private, "
            "link-local or metadata address, or an unknown event type (`fields` names it)."
        ),
    ),
)
def create_webhook(request: HttpRequest, payload: sc.WebhookCreate) -> Any:
    try:
        endpoint, secret = ep.create_endpoint(
            org_of(request),
            url=payload.url,
            event_types=payload.event_types,
            description=payload.description,
            enabled=payload.enabled,
            channel=Channel.API,
        )
    except ep.InvalidEndpoint as exc:
        return _invalid(exc)
    return Status(201, webhook_json(endpoint, secret))


@router.get(
    "/webhooks/{int:webhook_id}",
    url_name="api_webhook",
    operation_id="getWebhook",
    summary="Read a webhook endpoint",
    tags=["webhooks"],
    response={200: sc.Webhook, 404: Error, **ERRORS},
    openapi_extra=described(
        HOOKS_READ, s200={"description": "The endpoint."}, s400=bad_query(), s404=NOT_FOUND
    ),
)
def get_webhook(request: HttpRequest, webhook_id: Path[sc.WebhookId]) -> Any:
    endpoint = _endpoint(request, webhook_id)
    return _not_found() if endpoint is None else webhook_json(endpoint)


@router.patch(
    "/webhooks/{int:webhook_id}",
    url_name="api_webhook",
    operation_id="updateWebhook",
    summary="Change a webhook endpoint",
    description="Only the fields sent change. Enabling it again clears its failure count.",
    tags=["webhooks"],
    response={200: sc.Webhook, 404: Error, **ERRORS},
    openapi_extra=described(
        HOOKS_WRITE,
        s200={"description": "The endpoint as changed."},
        s400=bad_query("A field is refused (`fields` names it)."),
        s404=NOT_FOUND,
    ),
)
def update_webhook(
    request: HttpRequest, webhook_id: Path[sc.WebhookId], payload: sc.WebhookUpdate
) -> Any:
    endpoint = _endpoint(request, webhook_id)
    if endpoint is None:
        return _not_found()
    try:
        ep.update_endpoint(
            endpoint,
            url=endpoint.url if payload.url is None else payload.url,
            event_types=endpoint.event_types
            if payload.event_types is None
            else payload.event_types,
            description=(
                endpoint.description if payload.description is None else payload.description
            ),
            enabled=endpoint.enabled if payload.enabled is None else payload.enabled,
            channel=Channel.API,
        )
    except ep.InvalidEndpoint as exc:
        return _invalid(exc)
    return webhook_json(endpoint)


@router.delete(
    "/webhooks/{int:webhook_id}",
    url_name="api_webhook",
    operation_id="deleteWebhook",
    summary="Delete a webhook endpoint and its delivery log",
    tags=["webhooks"],
    response={204: None, 404: Error, **ERRORS},
    openapi_extra=described(
        HOOKS_WRITE, s204={"description": "Deleted."}, s400=bad_query(), s404=NOT_FOUND
    ),
)
def delete_webhook(request: HttpRequest, webhook_id: Path[sc.WebhookId]) -> Any:
    endpoint = _endpoint(request, webhook_id)
    if endpoint is None:
        return _not_found()
    ep.delete_endpoint(endpoint, actor=None, channel=Channel.API)
    return Status(204, None)


@router.post(
    "/webhooks/{int:webhook_id}/rotate-secret",
    url_name="api_webhook_rotate",
    operation_id="rotateWebhookSecret",
    summary="Rotate the signing secret",
    description="A new secret signs from now on; the old one also signs (a second `v1=`) "
    "for `overlap_hours`. The answer carries the new secret, this once.",
    tags=["webhooks"],
    response={200: sc.WebhookWithSecret, 404: Error, **ERRORS},
    openapi_extra=described(
        HOOKS_WRITE,
        s200={"description": "Rotated; `secret` is shown this once."},
        s400=bad_query("`overlap_hours` is out of range."),
        s404=NOT_FOUND,
    ),
)
def rotate_webhook_secret(
    request: HttpRequest, webhook_id: Path[sc.WebhookId], payload: sc.RotateSecret
) -> Any:
    endpoint = _endpoint(request, webhook_id)
    if endpoint is None:
        return _not_found()
    secret = ep.rotate_secret(
        endpoint,
        overlap=timedelta(hours=payload.overlap_hours),
        actor=None,
        channel=Channel.API,
    )
    return webhook_json(endpoint, secret)


@router.post(
    "/webhooks/{int:webhook_id}/test",
    url_name="api_webhook_test",
    operation_id="sendWebhookTest",
    summary="Send a test event to this endpoint",
    tags=["webhooks"],
    response={202: sc.Delivery, 404: Error, **ERRORS},
    openapi_extra=described(
        HOOKS_WRITE,
        s202={"description": "Queued for delivery."},
        s400=bad_query(),
        s404=NOT_FOUND,
    ),
)
def send_webhook_test(request: HttpRequest, webhook_id: Path[sc.WebhookId]) -> Any:
    endpoint = _endpoint(request, webhook_id)
    if endpoint is None:
        return _not_found()
    delivery = ep.send_test(endpoint, actor=None, channel=Channel.API)
    delivery = Delivery.objects.select_related("event__org").get(pk=delivery.pk)
    return Status(202, delivery_json(delivery))


@router.get(
    "/webhooks/{int:webhook_id}/deliveries",
    url_name="api_webhook_deliveries",
    operation_id="listWebhookDeliveries",
    summary="The endpoint's deliveries, newest first",
    tags=["webhooks"],
    response={200: sc.DeliveryList, 404: Error, **ERRORS},
    openapi_extra=described(
        HOOKS_READ,
        s200={"description": "A page of deliveries."},
        s400=bad_query("A query parameter is invalid or unknown."),
        s404=NOT_FOUND,
    ),
)
def list_deliveries(
    request: HttpRequest, webhook_id: Path[sc.WebhookId], filters: Query[sc.DeliveryFilters]
) -> Any:
    endpoint = _endpoint(request, webhook_id)
    if endpoint is None:
        return _not_found()
    rows_q = Delivery.objects.filter(endpoint=endpoint).select_related("event__org").order_by("-id")
    if filters.cursor:
        rows_q = rows_q.filter(pk__lt=filters.cursor)
    return _id_page(rows_q, filters.limit, delivery_json)


@router.post(
    "/webhooks/{int:webhook_id}/deliveries/{int:delivery_id}/redeliver",
    url_name="api_webhook_redeliver",
    operation_id="redeliverWebhook",
    summary="Send a delivered or failed event again (same id)",
    tags=["webhooks"],
    response={202: sc.Delivery, 404: Error, 409: Error, **ERRORS},
    openapi_extra=described(
        HOOKS_WRITE,
        s202={"description": "Queued again."},
        s400=bad_query(),
        s404=NOT_FOUND,
        s409={"description": "The delivery is still pending: it will be sent anyway."},
    ),
)
def redeliver(
    request: HttpRequest, webhook_id: Path[sc.WebhookId], delivery_id: Path[sc.DeliveryId]
) -> Any:
    endpoint = _endpoint(request, webhook_id)
    delivery = (
        Delivery.objects.select_related("event__org", "endpoint__org")
        .filter(endpoint=endpoint, pk=delivery_id)
        .first()
        if endpoint is not None and delivery_id <= inp.MAX_ID
        else None
    )
    if delivery is None:
        return error(404, "No such delivery.")
    if not ep.redeliver(delivery, actor=None, channel=Channel.API):
        return error(409, "This delivery is still pending.")
    delivery.refresh_from_db()
    return Status(202, delivery_json(delivery))


def _id_page(rows_q: Any, limit: int, as_json: Any) -> dict[str, Any]:
    """One page of a list paged by row id: ``limit`` rows and the cursor of the next page
    (None on the last), read with one query of ``limit + 1`` rows."""
    rows = list(rows_q[: limit + 1])
    return {
        "results": [as_json(row) for row in rows[:limit]],
        "next_cursor": rows[limit - 1].pk if len(rows) > limit else None,
    }
