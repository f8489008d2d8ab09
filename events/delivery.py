"""Sending deliveries: at least once, each session's events in sequence order.

    deliver_due(budget_seconds=20.0) -> int     # attempts made

A worker claims a due delivery with a conditional UPDATE (``claimed_until``), posts it, and
records the attempt and the outcome in one transaction. A worker killed mid-way leaves a
claim that simply expires, and the next worker sends the event again, with the same id:
receivers dedupe by it. A session's next event is not sent while an earlier one for the same
endpoint is still pending, so per endpoint and session the receiver sees them in order.

Each POST: 10 s timeout, redirects not followed (a 3xx is a failure), to the address the URL
check resolved (events.egress). A failure retries with exponential backoff and jitter; after
``RENSEI_WEBHOOK_RETRY_HOURS`` (24) the delivery is failed. ``RENSEI_WEBHOOK_DISABLE_AFTER``
failed attempts in a row disable the endpoint, with an alert to the org's admins.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from events import alerts, egress, signing
from events.models import Delivery, DeliveryAttempt, DeliveryState, Event, WebhookEndpoint
from rensei import crypto

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
EXCERPT_CHARS = 500
USER_AGENT = "Rensei-Webhooks/1"
UNSIGNABLE = (
    "Not sent: the endpoint's signing secret cannot be decrypted with this server's "
    "RENSEI_ENCRYPTION_KEYS (a key was removed from the ring before rotating)."
)
THREADS = "RENSEI_WEBHOOK_DELIVERY_THREADS"
_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def timeout_seconds() -> float:
    """10 s; the fault tests shorten it (``RENSEI_WEBHOOK_TIMEOUT_SECONDS``)."""
    return _setting("RENSEI_WEBHOOK_TIMEOUT_SECONDS", TIMEOUT_SECONDS)


def client() -> httpx.Client:
    """One keep-alive client per process (connections reused between deliveries)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                timeout=timeout_seconds(), follow_redirects=False, trust_env=False, verify=True
            )
        return _client


def envelope(event: Event) -> dict[str, Any]:
    """The body receivers get (and the feed lists): docs/events.md."""
    return {
        "id": str(event.uid),
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "org": event.org.slug,
        "session_id": event.session_id,
        "sequence": event.sequence,
        "data": event.data,
    }


def body_of(event: Event) -> bytes:
    return json.dumps(envelope(event), cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secret, and during a rotation's overlap window the previous one too."""
    found = [crypto.decrypt(endpoint.secret_encrypted)]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret_encrypted and until is not None and until > now:
        found.append(crypto.decrypt(endpoint.previous_secret_encrypted))
    return found


def backoff(attempts: int) -> timedelta:
    """After the n-th failed try: base × 2^(n-1), at most an hour, ±50 % jitter."""
    base = _setting("RENSEI_WEBHOOK_RETRY_BASE_SECONDS", 10.0)
    delay = min(base * 2 ** max(attempts - 1, 0), 3600.0)
    return timedelta(seconds=delay * random.uniform(0.5, 1.5))


# --- claiming ------------------------------------------------------------------------------


def due(now: datetime, limit: int) -> list[int]:
    """Pending deliveries that may go now: unclaimed, enabled endpoint, head of their line."""
    earlier = Delivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        session_id=OuterRef("session_id"),
        state=DeliveryState.PENDING,
        sequence__lt=OuterRef("sequence"),
    )
    return list(
        Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(endpoint__enabled=True)
        .filter(Q(session_id__isnull=True) | ~Exists(earlier))
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def claim(delivery_id: int, now: datetime) -> bool:
    lease = timedelta(seconds=_setting("RENSEI_WEBHOOK_CLAIM_SECONDS", 60.0))
    return bool(
        Delivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(endpoint__enabled=True)
        .update(claimed_until=now + lease)
    )


# --- one attempt ---------------------------------------------------------------------------


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str, str]:
    """(status code, response excerpt, error) of one POST to the checked address."""
    try:
        addresses = egress.check(url, require_resolution=True)
    except egress.UnsafeUrl as exc:
        return None, "", str(exc)[:300]
    parts = httpx.URL(url)
    target = parts.copy_with(host=str(addresses[0]))
    extensions = {"sni_hostname": parts.host} if parts.scheme == "https" else {}
    try:
        response = client().post(
            target,
            content=body,
            headers={**headers, "Host": parts.netloc.decode("ascii")},
            extensions=extensions,
        )
    except httpx.TimeoutException:
        return None, "", f"No answer within {timeout_seconds():g} s."
    except httpx.HTTPError as exc:
        return None, "", f"Could not connect: {type(exc).__name__}"[:300]
    excerpt = response.text[:EXCERPT_CHARS]
    if 300 <= response.status_code < 400:
        return response.status_code, excerpt, "Redirects are not followed."
    return response.status_code, excerpt, ""


def attempt(delivery: Delivery) -> bool:
    """Send one claimed delivery and record what happened; True when delivered."""
    endpoint = delivery.endpoint
    event = delivery.event
    now = timezone.now()
    body = body_of(event)
    stamp = int(time.time())
    try:
        secrets = signing_secrets(endpoint, now)
    except crypto.DecryptionError:
        # Nothing is sent unsigned: a failed attempt the delivery log shows, retried (a key
        # put back in the ring fixes it) until the endpoint is disabled like any failing one.
        record(delivery, endpoint, ok=False, status=None, excerpt="", error=UNSIGNABLE, latency=0)
        return False
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Rensei-Event-Id": str(event.uid),
        "Rensei-Event-Type": event.type,
        signing.HEADER: signing.header(stamp, body, secrets),
    }
    started = time.monotonic()
    status, excerpt, error = post(endpoint.url, body, headers)
    latency = int((time.monotonic() - started) * 1000)
    ok = status is not None and 200 <= status < 300 and not error
    if status is not None and not ok and not error:
        error = f"HTTP {status}"
    record(delivery, endpoint, ok=ok, status=status, excerpt=excerpt, error=error, latency=latency)
    return ok


def record(
    delivery: Delivery,
    endpoint: WebhookEndpoint,
    *,
    ok: bool,
    status: int | None,
    excerpt: str,
    error: str,
    latency: int,
) -> None:
    now = timezone.now()
    first = delivery.first_attempt_at or now
    tries = delivery.attempts + 1
    retry_for = timedelta(hours=_setting("RENSEI_WEBHOOK_RETRY_HOURS", 24.0))
    next_at: datetime | None = None
    fields: dict[str, Any] = {
        "attempts": F("attempts") + 1,
        "claimed_until": None,
        "first_attempt_at": first,
        "last_status_code": status,
    }
    if ok:
        fields.update(state=DeliveryState.DELIVERED, delivered_at=now)
    elif now - first >= retry_for:
        fields.update(state=DeliveryState.FAILED)
    else:
        next_at = now + backoff(tries)
        fields.update(next_attempt_at=next_at)
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            endpoint=endpoint,
            delivery=delivery,
            at=now,
            status_code=status,
            latency_ms=latency,
            response_excerpt=excerpt,
            error=error,
            next_retry_at=next_at,
        )
        Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING).update(**fields)
        if ok:
            WebhookEndpoint.objects.filter(pk=endpoint.pk, consecutive_failures__gt=0).update(
                consecutive_failures=0
            )
        else:
            _count_failure(endpoint)


def _count_failure(endpoint: WebhookEndpoint) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    limit = int(_setting("RENSEI_WEBHOOK_DISABLE_AFTER", 100))
    reason = f"Disabled after {limit} failed deliveries in a row."
    if WebhookEndpoint.objects.filter(
        pk=endpoint.pk, enabled=True, consecutive_failures__gte=limit
    ).update(enabled=False, disabled_reason=reason):
        alerts.endpoint_disabled(endpoint, reason)


# --- the loop ------------------------------------------------------------------------------


def deliver_due(budget_seconds: float = 20.0, batch: int = 50) -> int:
    """Claim and send due deliveries until none is due or the time budget is spent.

    The due ones are heads of distinct (endpoint, session) lines, so they go out side by
    side on ``RENSEI_WEBHOOK_DELIVERY_THREADS`` threads (4) without breaking any session's
    order; inside a caller's transaction (tests) they go one by one on its connection.
    """
    deadline = time.monotonic() + budget_seconds
    threads = 1 if connection.in_atomic_block else int(_setting(THREADS, 4))
    made = 0
    while time.monotonic() < deadline:
        ids = due(timezone.now(), batch)
        if not ids:
            break
        made += _send_all(ids, threads, deadline)
    return made


def _send_one(delivery_id: int) -> bool:
    if not claim(delivery_id, timezone.now()):
        return False  # another worker has it
    delivery = Delivery.objects.select_related("endpoint", "event", "event__org").get(
        pk=delivery_id
    )
    attempt(delivery)
    return True


def _send_all(ids: list[int], threads: int, deadline: float) -> int:
    if threads <= 1 or len(ids) == 1:
        return sum(_send_one(i) for i in ids if time.monotonic() < deadline)
    todo = list(reversed(ids))
    lock = threading.Lock()
    sent = [0]

    def work() -> None:
        try:
            while time.monotonic() < deadline:
                with lock:
                    if not todo:
                        return
                    delivery_id = todo.pop()
                if _send_one(delivery_id):
                    with lock:
                        sent[0] += 1
        except Exception:
            log.exception("webhook delivery thread failed")
        finally:
            connection.close()  # this thread's own connection

    workers = [threading.Thread(target=work) for _ in range(min(threads, len(ids)))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sent[0]
