"""What /metrics needs from the core: who may read it, the broker's queue depth, and the
cross-process job counters (``rensei.ops``). The page itself is ``sessions.metrics``: it
also counts sessions, which the core cannot see.

Access: ``Authorization: Bearer <RENSEI_METRICS_TOKEN>``. With no token configured /metrics
is open only while DEBUG is on (the demo), and answers 404 in production.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from rensei import ops
from rensei.celery import app

# Every kind of alert, exported at 0 until the first one (a rate over a missing series reads
# as no data, not as none raised).
ALERT_KINDS = ("budget_threshold", "ledger_mismatch", "reconciliation_drift", "webhook_disabled")


def access(request: HttpRequest) -> int:
    """0 when the request may read the metrics, else the status to answer (401 or 404)."""
    token = settings.RENSEI_METRICS_TOKEN
    if not token:
        return 0 if settings.DEBUG else 404
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token):
        return 0
    return 401


def queue_depth() -> float:
    """Messages waiting in the default queue: LLEN on Redis, message files on the embedded
    broker (the transports' own ``_size``); NaN when the broker does not answer."""
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            # kombu's virtual transports (Redis, filesystem) count a queue with ``_size``.
            channel: Any = conn.default_channel
            return float(channel._size(settings.CELERY_TASK_DEFAULT_QUEUE))
    except Exception:
        return float("nan")


def core_families() -> list[GaugeMetricFamily | CounterMetricFamily]:
    depth = GaugeMetricFamily(
        "rensei_queue_depth", "Jobs waiting in the broker queue.", labels=["queue"]
    )
    depth.add_metric([settings.CELERY_TASK_DEFAULT_QUEUE], queue_depth())
    retries = CounterMetricFamily(
        "rensei_job_retries", "Provider job retries scheduled, by task.", labels=["task"]
    )
    for task, n in sorted(ops.counts(ops.JOB_RETRY).items()):
        retries.add_metric([task], n)
    errors = CounterMetricFamily(
        "rensei_provider_errors",
        'Provider errors that sent a job to its retry path, by HTTP status ("none": no answer).',
        labels=["status"],
    )
    for status, n in sorted(ops.counts(ops.PROVIDER_ERROR).items()):
        errors.add_metric([status], n)
    alerts = CounterMetricFamily(
        "rensei_alerts",
        "Alerts raised, by kind (budget thresholds crossed, webhook endpoints disabled, "
        "ledger check mismatches, reconciliation drift past its threshold).",
        labels=["kind"],
    )
    found = ops.counts(ops.ALERT)
    for kind in sorted(set(ALERT_KINDS) | set(found)):
        alerts.add_metric([kind], found.get(kind, 0))
    return [depth, retries, errors, alerts]
