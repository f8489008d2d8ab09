"""/metrics in the Prometheus text format, computed from the database at scrape time, so
every web process answers the same figures whatever process did the work.

* ``rensei_sessions{state}``: sessions by state, one GROUP BY.
* ``rensei_provision_seconds``: from request (``created_at``) to first running
  (``started_at``), a histogram over every session that reached running, one aggregate query.
* queue depth, job retries, provider errors by status: ``rensei.metrics``.

Outbox lag and alert counts are not exported: neither exists in the product yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

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


class _Scrape(Collector):
    def collect(self) -> Iterator[Metric]:
        yield _sessions_by_state()
        yield _provision_latency()
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
