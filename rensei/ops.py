"""Cross-process bookkeeping for operations: counters /metrics reads, and leases that keep
a periodic pass from running twice at once.

Both live in the database, so they hold across web, worker and beat processes and across
machines, on SQLite and PostgreSQL alike, with no broker-specific lock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from rensei.models import Lease, OpsCounter

log = logging.getLogger(__name__)

JOB_RETRY = "job_retry"
PROVIDER_ERROR = "provider_error"
# Alerts raised, by kind (budget_threshold, webhook_disabled, ledger_mismatch,
# reconciliation_drift): /metrics exports them as rensei_alerts.
ALERT = "alert"


def bump(kind: str, key: str, by: int = 1) -> None:
    """Add ``by`` to the counter; never fails the caller (metrics are not worth a job)."""
    try:
        if OpsCounter.objects.filter(kind=kind, key=key).update(value=F("value") + by):
            return
        try:
            with transaction.atomic():
                OpsCounter.objects.create(kind=kind, key=key, value=by)
        except IntegrityError:  # another process created it first
            OpsCounter.objects.filter(kind=kind, key=key).update(value=F("value") + by)
    except Exception:
        log.warning("could not count %s[%s]", kind, key, exc_info=True)


def counts(kind: str) -> dict[str, int]:
    return dict(OpsCounter.objects.filter(kind=kind).values_list("key", "value"))


def acquire(name: str, ttl: timedelta) -> str | None:
    """Take the lease ``name`` for ``ttl``; its holder token, or None when someone holds it."""
    holder = uuid.uuid4().hex
    now = timezone.now()
    try:
        with transaction.atomic():
            Lease.objects.create(name=name, holder=holder, expires_at=now + ttl)
        return holder
    except IntegrityError:
        pass
    # Taken over only once expired, by exactly one of the processes that try.
    taken = Lease.objects.filter(name=name, expires_at__lte=now).update(
        holder=holder, expires_at=now + ttl
    )
    return holder if taken else None


def release(name: str, holder: str) -> None:
    Lease.objects.filter(name=name, holder=holder).delete()


@contextmanager
def lease(name: str, ttl: timedelta) -> Iterator[bool]:
    """``with lease(...) as held:`` run the body's work only when ``held``."""
    holder = acquire(name, ttl)
    try:
        yield holder is not None
    finally:
        if holder is not None:
            release(name, holder)
