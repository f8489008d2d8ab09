"""Billing jobs: the daily accrual (and, imported here so the worker knows it, the demo's
first checks: ``billing.demo_checks``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing.demo_checks import first_checks  # noqa: F401  (registers the task)
from billing.periods import midnight_floor, midnights_between
from rensei.ops import lease
from sessions.intervals import close_open_interval, open_interval
from sessions.models import RunningInterval, Session

log = logging.getLogger(__name__)

ACCRUAL_REASON = "daily-accrual"
ACCRUAL_LEASE = timedelta(hours=1)


def _boundary(value: str | datetime | None) -> datetime:
    """The last midnight to split at: the given instant's midnight, never in the future."""
    now = timezone.now()
    if value is None:
        at = now
    elif isinstance(value, datetime):
        at = value
    else:
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"not an ISO-8601 datetime: {value!r}")
        at = parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    return midnight_floor(min(at, now))


def split_session_at_midnights(session_id: int, boundary: datetime) -> int:
    """Close the session's open interval at every UTC midnight up to ``boundary`` and reopen
    it there; returns how many splits were made (0 when there was nothing to do).

    One transaction per session with the session row locked first: a pause, resume or
    terminate job that updates the same session waits for us, then finds the reopened
    interval, so time is never billed twice or left unbilled. Running twice is a no-op:
    the second run finds an interval that starts at the boundary.
    """
    with transaction.atomic():
        session = Session.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            return 0
        current = RunningInterval.objects.filter(session=session, ended_at__isnull=True).first()
        if current is None:
            return 0
        splits = 0
        for at in midnights_between(current.started_at, boundary):
            close_open_interval(session, at=at, reason=ACCRUAL_REASON)
            open_interval(session, at=at)
            splits += 1
        return splits


def accrue(boundary: datetime) -> int:
    """Split every interval still open at ``boundary`` (a UTC midnight) at each midnight it
    crossed, oldest first, so every ledger row belongs to one UTC day."""
    session_ids = list(
        RunningInterval.objects.filter(ended_at__isnull=True, started_at__lt=boundary)
        .order_by("session_id")
        .values_list("session_id", flat=True)
    )
    splits = 0
    for session_id in session_ids:
        try:
            splits += split_session_at_midnights(session_id, boundary)
        except Exception:
            # One session's problem (e.g. no rate card for its provider) must not stop the
            # others from being billed; the next run retries it from where it stopped.
            log.exception("daily accrual failed for session %s", session_id)
    return splits


@shared_task(name="billing.tasks.daily_accrual")
def daily_accrual(boundary: str | None = None) -> int:
    """Beat runs this at 00:00 UTC. Late runs catch up every missed midnight; running it
    twice changes nothing. ``boundary`` (ISO-8601) is for tests and manual catch-up."""
    at = _boundary(boundary)
    # A second beat (or a manual run) at the same time waits for nothing and does nothing:
    # the split is idempotent, the lease keeps two runs from racing over the same sessions.
    with lease("daily-accrual", ACCRUAL_LEASE) as held:
        if not held:
            log.info("daily accrual up to %s: another run holds the lease", at.isoformat())
            return 0
        splits = accrue(at)
    log.info("daily accrual up to %s: %d interval splits", at.isoformat(), splits)
    return splits
