"""/metrics in the Prometheus text format, computed from the database at scrape time, so
every web process answers the same figures whatever process did the work.

* ``rensei_sessions{state}``: sessions by state, one GROUP BY.
* ``rensei_provision_seconds``: from request (``created_at``) to first running
  (``started_at``), a histogram over every session that reached running, one aggregate query.
* ``rensei_outbox_lag_seconds``: age of the oldest event the publisher has not yet given a
  feed position (0 when none waits); ``rensei_webhook_lag_seconds``: age of the oldest event
  with a delivery still pending; ``rensei_outbox_undelivered``: how many of each.
* queue depth, job retries, provider errors by status, alerts raised by kind:
  ``rensei.metrics`` (each app counts its alerts in ``rensei.ops`` when it raises one).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from events.models import Delivery, DeliveryState, Event
from rensei import metrics
from sessions.models import Session, SessionState

# Seconds from request to running; E2B makes a sandbox in well under a second, a cold
# template or a retried create takes longer.
BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


def _sessions_by_state() -> GaugeMetricFamily:
    family = GaugeMetricFamily("rensei_sessions", "Sessions by state.", labels=["state"])
    found = dict(
        Session.objects.order_by()
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    for state in SessionState.values:
        family.add_metric([state], found.get(state, 0))
    return family


def _provision_latency() -> HistogramMetricFamily:
    latency = ExpressionWrapper(F("started_at") - F("created_at"), output_field=DurationField())
    rows = (
        Session.objects.filter(started_at__isnull=False)
        .annotate(latency=latency)
        .aggregate(
            total=Count("id"),
            seconds=Sum("latency"),
            **{
                f"le_{i}": Count("id", filter=Q(latency__lte=timedelta(seconds=b)))
                for i, b in enumerate(BUCKETS)
            },
        )
    )
    buckets = [(str(float(b)), rows[f"le_{i}"]) for i, b in enumerate(BUCKETS)]
    buckets.append(("+Inf", rows["total"]))
    total: timedelta | None = rows["seconds"]
    return HistogramMetricFamily(
        "rensei_provision_seconds",
        "Seconds from a session's request to its first running state.",
        buckets=buckets,
        sum_value=total.total_seconds() if total else 0.0,
    )


def _outbox() -> Iterator[GaugeMetricFamily]:
    """Two aggregates over partial indexes (unpublished events, pending deliveries)."""
    now = timezone.now()
    unpublished = Event.objects.filter(position__isnull=True).aggregate(
        n=Count("id"), oldest=Min("occurred_at")
    )
    pending = Delivery.objects.filter(state=DeliveryState.PENDING).aggregate(
        n=Count("id"), oldest=Min("event__occurred_at")
    )
    lag = GaugeMetricFamily(
        "rensei_outbox_lag_seconds",
        "Age of the oldest event not yet published to the feed (0: none waits).",
    )
    lag.add_metric([], _age(now, unpublished["oldest"]))
    webhook = GaugeMetricFamily(
        "rensei_webhook_lag_seconds",
        "Age of the oldest event with a webhook delivery still pending (0: none).",
    )
    webhook.add_metric([], _age(now, pending["oldest"]))
    waiting = GaugeMetricFamily(
        "rensei_outbox_undelivered",
        "Events not yet published, and webhook deliveries still pending.",
        labels=["stage"],
    )
    waiting.add_metric(["unpublished"], unpublished["n"])
    waiting.add_metric(["delivery_pending"], pending["n"])
    yield from (lag, webhook, waiting)


def _age(now: datetime, oldest: datetime | None) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


class _Scrape(Collector):
    def collect(self) -> Iterator[Metric]:
        yield _sessions_by_state()
        yield _provision_latency()
        yield from _outbox()
        yield from metrics.core_families()


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    denied = metrics.access(request)
    if denied == 401:
        response = HttpResponse("A metrics token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if denied:
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
