"""A pool's lifecycle policies, applied by a beat job every minute.

    apply_policies(now=None, minute=timedelta(minutes=1)) -> dict[str, int]

Three policies, each off unless the pool's config sets it (pools/config.py):

- ``idlePauseMinutes``: pause a running session whose CPU stayed under ``idleCpuPercent``
  (2 % when absent) for that long. It reads the provider's metrics for the window and acts
  only when every sample is under the threshold and the samples cover the window (a box
  that just resumed, or a provider that sent two samples, is not judged idle).
- ``pausedTerminateDays``: terminate a session paused longer than that (one waiting in line
  to resume is left alone: someone asked for it back).
- ``maxSessionHours``: a session whose age, counted from when it first ran (paused time
  included), exceeds it is terminated, or paused when ``maxSessionAction`` is ``pause``.

Every action is a request through the same service path the pages use
(``request_pause`` / ``request_terminate``, channel ``job``, the reason on the timeline and in
the audit row), so caps, intervals and cost events hold as for a click. The requests are
conditional state moves, so two passes at once act once: the loser's move finds the state
changed and does nothing, and only the winner writes its ``PolicyAction`` (the marker the
"saved by auto-pause" figure reads). ``minute`` shortens the idle window for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from django.db import transaction
from django.utils import timezone

from pools import config as schema
from pools.models import CapacityPool
from pools.providers import for_pool
from pools.providers.base import ProviderError
from rensei.models import Channel
from sessions.actions import request_pause, request_terminate
from sessions.cpu_samples import remember_cpu
from sessions.models import PolicyAction, PolicyKind, Session, SessionState

log = logging.getLogger(__name__)
S = SessionState
# Samples count as covering the window when the first is within this share of the window
# from its start and the last within it from its end (samples come every few seconds).
COVERAGE_SLACK = 0.25


class Sample(Protocol):
    """What the pass reads of the provider contract's ``MetricSample``."""

    @property
    def at(self) -> datetime: ...
    @property
    def cpu_pct(self) -> float: ...


class MetricsSource(Protocol):
    def metrics(self, handle: str, start: datetime, end: datetime) -> Sequence[Sample]: ...


def apply_policies(
    now: datetime | None = None, minute: timedelta = timedelta(minutes=1)
) -> dict[str, int]:
    """One pass over every pool with a policy. Returns how many requests each policy won."""
    now = now or timezone.now()
    done = {kind: 0 for kind in PolicyKind.values}
    for pool in CapacityPool.objects.select_related("org").order_by("pk"):
        config = pool.config if isinstance(pool.config, dict) else {}
        if config.get("idlePauseMinutes"):
            done[PolicyKind.IDLE_PAUSE] += idle_pass(pool, config, now, minute)
        if config.get("pausedTerminateDays"):
            done[PolicyKind.PAUSED_TERMINATE] += paused_pass(pool, config, now)
        if config.get("maxSessionHours"):
            done[PolicyKind.MAX_AGE] += age_pass(pool, config, now)
    return done


def is_idle(samples: Sequence[Sample], start: datetime, end: datetime, threshold: float) -> bool:
    """Every sample under ``threshold`` and the samples cover ``start``–``end``."""
    if not samples:
        return False
    slack = (end - start) * COVERAGE_SLACK
    times = sorted(s.at for s in samples)
    if times[0] > start + slack or times[-1] < end - slack:
        return False
    return all(s.cpu_pct < threshold for s in samples)


def idle_pass(
    pool: CapacityPool,
    config: dict[str, Any],
    now: datetime,
    minute: timedelta,
    provider: MetricsSource | None = None,
) -> int:
    minutes = int(config["idlePauseMinutes"])
    threshold = float(config.get("idleCpuPercent") or schema.DEFAULT_IDLE_CPU_PERCENT)
    window = minute * minutes
    start = now - window
    # Running the whole window in the current stretch: a box that resumed a moment ago has
    # no samples of its own to judge by.
    candidates = list(
        Session.objects.filter(
            pool=pool,
            state=S.RUNNING,
            intervals__ended_at__isnull=True,
            intervals__started_at__lte=start,
        )
        .exclude(sandbox_id="")
        .select_related("org", "pool")
        .order_by("pk")
    )
    if not candidates:
        return 0
    try:
        source = provider if provider is not None else cast(MetricsSource, for_pool(pool))
    except (LookupError, ProviderError) as exc:
        log.warning("idle policy of pool %s skipped: %s", pool.pk, exc)
        return 0
    reason = f"paused by the pool's idle policy: CPU under {threshold:g} % for {minutes} min"
    won = 0
    for session in candidates:
        try:
            samples = source.metrics(session.sandbox_id, start, now)
        except ProviderError as exc:
            log.warning("idle policy: no metrics for session %s: %s", session.pk, exc)
            continue
        if samples:
            # The sessions list's CPU column reads the latest sample stored on the session.
            latest = max(samples, key=lambda s: s.at)
            remember_cpu(session.pk, latest.at, latest.cpu_pct)
        if is_idle(samples, start, now, threshold):
            won += _act(session, PolicyKind.IDLE_PAUSE, "pause", reason, now)
    return won


def paused_pass(pool: CapacityPool, config: dict[str, Any], now: datetime) -> int:
    days = int(config["pausedTerminateDays"])
    stale = Session.objects.filter(
        pool=pool,
        state=S.PAUSED,
        state_changed_at__lte=now - timedelta(days=days),
        resume_requested_at__isnull=True,
    )
    reason = f"terminated by the pool's paused-session policy: paused over {days} days"
    return sum(
        _act(s, PolicyKind.PAUSED_TERMINATE, "terminate", reason, now)
        for s in stale.select_related("org", "pool").order_by("pk")
    )


def age_pass(pool: CapacityPool, config: dict[str, Any], now: datetime) -> int:
    hours = int(config["maxSessionHours"])
    action = config.get("maxSessionAction") or "terminate"
    states = [S.RUNNING] if action == "pause" else [S.RUNNING, S.PAUSED]
    old = Session.objects.filter(
        pool=pool, state__in=states, started_at__lte=now - timedelta(hours=hours)
    )
    done = "paused" if action == "pause" else "terminated"
    reason = f"{done} by the pool's age limit: first ran over {hours} h ago"
    return sum(
        _act(s, PolicyKind.MAX_AGE, action, reason, now)
        for s in old.select_related("org", "pool").order_by("pk")
    )


def _act(session: Session, kind: str, action: str, reason: str, now: datetime) -> int:
    request: Callable[..., bool] = request_pause if action == "pause" else request_terminate
    with transaction.atomic():
        if not request(session, None, Channel.JOB, reason=reason):
            return 0
        PolicyAction.objects.create(
            session=session, kind=kind, action=action, reason=reason, at=now
        )
    return 1
