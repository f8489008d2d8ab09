"""The sessions list's CPU column: a beat job every minute stores the latest CPU sample of
each running sandbox on its session, so the column shows a figure for every running session
without a provider call per row (the list reads ``last_cpu_pct`` / ``last_metrics_at``).

    sample_running(now=None, limit=SAMPLE_LIMIT) -> int   # sessions given a newer sample

One metrics call per running sandbox whose stored sample is older than ``FRESH_FOR`` (the
session page's metrics section and the idle policy store samples too: a session they sampled
a moment ago is skipped), oldest sample first, at most ``limit`` a pass. The store is
conditional, so a pass never overwrites a newer sample stored meanwhile. A sandbox E2B has no
samples for keeps the dash; a provider error is logged and the pass goes on.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import groupby

from django.db.models import F, Q
from django.utils import timezone

from pools.providers import for_pool
from pools.providers.base import ConfigError, ProviderError
from sessions.models import Session, SessionState

log = logging.getLogger(__name__)

SAMPLE_LIMIT = 200  # sandboxes a pass asks about; the rest wait for the next minute
FRESH_FOR = timedelta(seconds=50)  # a stored sample this recent is left as it is
WINDOW = timedelta(minutes=2)  # the span asked for: E2B samples every few seconds


def remember_cpu(session_id: int, at: datetime, cpu_pct: float) -> bool:
    """Keep the latest sample for the sessions list; never overwrite a newer one."""
    return bool(
        Session.objects.filter(pk=session_id)
        .filter(Q(last_metrics_at__isnull=True) | Q(last_metrics_at__lt=at))
        .update(last_cpu_pct=cpu_pct, last_metrics_at=at)
    )


def due(now: datetime, limit: int = SAMPLE_LIMIT) -> list[Session]:
    """Running sessions with a sandbox whose stored sample is missing or older than
    ``FRESH_FOR``, oldest sample first, grouped by pool."""
    rows = (
        Session.objects.filter(state=SessionState.RUNNING, pool__isnull=False)
        .exclude(sandbox_id="")
        .filter(Q(last_metrics_at__isnull=True) | Q(last_metrics_at__lt=now - FRESH_FOR))
        .select_related("pool__org")
        .only("pk", "sandbox_id", "last_metrics_at", "pool")
        .order_by(F("last_metrics_at").asc(nulls_first=True), "pk")[:limit]
    )
    return sorted(rows, key=lambda s: s.pool_id or 0)


def sample_running(now: datetime | None = None, limit: int = SAMPLE_LIMIT) -> int:
    now = now or timezone.now()
    stored = 0
    for _pool_id, group in groupby(due(now, limit), key=lambda s: s.pool_id):
        sessions = list(group)
        pool = sessions[0].pool
        assert pool is not None  # filtered above
        try:
            provider = for_pool(pool)
        except (LookupError, ConfigError, ProviderError) as exc:
            log.warning("CPU samples of pool %s skipped: %s", pool.pk, exc)
            continue
        for session in sessions:
            try:
                samples = provider.metrics(session.sandbox_id, now - WINDOW, now)
            except ProviderError as exc:
                log.info("no CPU sample for session %s: %s", session.pk, exc)
                continue
            if samples:
                latest = max(samples, key=lambda s: s.at)
                stored += remember_cpu(session.pk, latest.at, latest.cpu_pct)
    return stored
