"""The demo's first checks: test the demo org's E2B key, health-check its pools and reconcile
yesterday (as the nightly job would have) once the local emulator answers, so a newcomer's
first look at Integrations, Capacity and Reconciliation shows what is true ("Connected",
"Passing", a clean day) rather than "Saved, not tested", "Not checked" and no run at all.

``seed_demo`` runs before ``make run`` starts the emulator, so the job it queues waits for the
emulator's port (every ``WAIT_S`` seconds, ``TRIES`` times), then runs the same test and checks
a person would from the pages; their results, audit rows and events are the ordinary ones. It
only ever tests a key nobody has tested, checks pools never checked and reconciles an org
never reconciled, so a later run of ``seed_demo`` leaves everything as people left it.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from billing.models import ReconciliationRun
from billing.recon_runs import reconcile_day
from pools.models import CapacityPool, HealthStatus
from pools.tasks import check_pool, start_check
from rensei.key_test import test_key
from rensei.models import Channel, Credential, Organization

TRIES = 60
WAIT_S = 2.0


def due(org: Organization) -> bool:
    """Whether the demo org has a key never tested, a pool never checked or no
    reconciliation run."""
    return _untested(org) or _unchecked(org).exists() or _never_reconciled(org)


def _untested(org: Organization) -> bool:
    return Credential.objects.filter(org=org, provider="e2b", last_test_ok__isnull=True).exists()


def _never_reconciled(org: Organization) -> bool:
    return not ReconciliationRun.objects.filter(org=org).exists()


def _unchecked(org: Organization) -> QuerySet[CapacityPool]:
    return CapacityPool.objects.filter(org=org, health_checked_at__isnull=True).exclude(
        health_status=HealthStatus.RUNNING
    )


def emulator_answers(url: str) -> bool:
    """Whether something accepts connections at ``url``'s host and port (loopback only)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@shared_task(name="billing.demo_checks.first_checks")
def first_checks(org_id: int, attempt: int = 0) -> str:
    """Test the key, check the pools and reconcile yesterday once the emulator answers;
    returns what it did."""
    org = Organization.objects.filter(pk=org_id).first()
    if org is None or not due(org):
        return "nothing to do"
    if not emulator_answers(settings.E2B_API_URL) and attempt + 1 < TRIES:
        cast(Any, first_checks).apply_async((org_id, attempt + 1), countdown=WAIT_S)
        return "waiting for the emulator"
    done = []
    if _untested(org):
        result = test_key(org, "e2b", actor=None, channel=Channel.JOB)
        done.append("key " + ("connected" if result.ok else "failed"))
    for pool in _unchecked(org):
        with transaction.atomic():
            check = start_check(pool, channel=Channel.JOB)
            cast(Any, check_pool).delay_on_commit(check.pk)
        done.append(f"checking {pool.name}")
    if _never_reconciled(org):
        run = reconcile_day(org, timezone.now().date() - timedelta(days=1))
        done.append(f"reconciled {run.day}")
    return ", ".join(done)
