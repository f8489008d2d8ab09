"""Liveness and readiness for load balancers and orchestrators. Both are public and say
nothing about the deployment beyond up or down: no versions, hosts, URLs or keys.

``/healthz``: the process answers requests (no database, no broker), for a liveness probe.
``/readyz``: the database and the broker answer, each with its latency; E2B is asked once
through the provider factory (a cheap list call, bounded by ``RENSEI_WEB_PROVIDER_TIMEOUT``)
with the server's own key. A stalled or failing E2B is reported but keeps the service
ready: pages and the API still work, and jobs wait and retry on their own. 503 when the
database or the broker is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from rensei import providers
from rensei.celery import app

logger = logging.getLogger(__name__)

# Seconds the broker may take to accept a connection before /readyz calls it down.
BROKER_TIMEOUT = 2


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)


def _timed(check: Callable[[], None], name: str) -> dict[str, object]:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:
        # The class only: a driver's message can carry a host name or a password.
        logger.warning("readiness: %s is down (%s)", name, type(exc).__name__)
        return {"status": "down", "latency_ms": _ms(started)}
    return {"status": "ok", "latency_ms": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _e2b() -> dict[str, object]:
    key = settings.E2B_API_KEY
    if not key:
        return {"status": "not configured"}
    started = time.perf_counter()
    try:
        result = providers.check_connection("e2b", key)
    except Exception as exc:  # never a 500 from a probe
        logger.warning("readiness: E2B check failed (%s)", type(exc).__name__)
        return {"status": "down", "latency_ms": _ms(started)}
    return {"status": "ok" if result.ok else "down", "latency_ms": _ms(started)}


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _timed(_database, "database"),
        "broker": _timed(_broker, "broker"),
        "e2b": _e2b(),
    }
    ready = checks["database"]["status"] == "ok" and checks["broker"]["status"] == "ok"
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
