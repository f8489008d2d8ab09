"""More than one of everything: two reconcile passes or two accruals at once act once, and
provider job retries and errors are counted across processes (rensei.ops)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing import tasks as billing_tasks
from pools.models import CapacityPool
from pools.providers.base import ProviderError, SandboxSpec
from pools.providers.fake import FakeCloud, FakeProvider
from rensei import ops
from rensei.models import Lease
from sessions import reconcile, tasks
from sessions.models import Session


def test_a_lease_is_held_once_until_released_or_expired(db: None) -> None:
    first = ops.acquire("x", timedelta(minutes=1))
    assert first is not None
    assert ops.acquire("x", timedelta(minutes=1)) is None
    ops.release("x", first)
    second = ops.acquire("x", timedelta(minutes=1))
    assert second is not None
    Lease.objects.filter(name="x").update(expires_at=timezone.now() - timedelta(seconds=1))
    third = ops.acquire("x", timedelta(minutes=1))  # its holder died: taken over
    assert third is not None and third != second
    ops.release("x", second)  # the old holder's release no longer frees it
    assert ops.acquire("x", timedelta(minutes=1)) is None


@pytest.mark.django_db
def test_a_reconcile_pass_while_another_runs_does_nothing(
    pool: CapacityPool, cloud: FakeCloud
) -> None:
    orphan = FakeProvider("").provision(
        pool.config, SandboxSpec(session_id="999999", request_id="r-1", org_slug=pool.org.slug)
    )
    holder = ops.acquire(f"reconcile:{pool.org_id}", reconcile.PASS_LEASE)
    assert holder is not None
    busy = reconcile.reconcile_org(pool.org_id)
    assert busy["skipped_busy"] == 1
    assert sum(v for k, v in busy.items() if k != "skipped_busy") == 0
    assert orphan.sandbox_id in cloud.sandboxes  # the busy pass touched nothing
    ops.release(f"reconcile:{pool.org_id}", holder)
    done = reconcile.reconcile_org(pool.org_id)
    assert done["skipped_busy"] == 0 and done["orphans_killed"] == 1
    assert orphan.sandbox_id not in cloud.sandboxes


@pytest.mark.django_db(transaction=True)
def test_concurrent_leases_in_threads_have_one_winner() -> None:
    winners: list[str] = []
    start = threading.Barrier(4)

    def take() -> None:
        start.wait()
        try:
            holder = ops.acquire("daily-accrual", timedelta(minutes=1))
            if holder:
                winners.append(holder)
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


@pytest.mark.django_db
def test_an_accrual_while_another_runs_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def accrue(at: object) -> int:
        calls.append(at)
        return 0

    monkeypatch.setattr(billing_tasks, "accrue", accrue)
    holder = ops.acquire("daily-accrual", billing_tasks.ACCRUAL_LEASE)
    assert billing_tasks.daily_accrual() == 0
    assert calls == []
    assert holder is not None
    ops.release("daily-accrual", holder)
    billing_tasks.daily_accrual()
    assert len(calls) == 1


@pytest.mark.django_db
def test_retries_and_provider_errors_are_counted(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("rensei.jobs.retry_countdown", lambda retries, retry_after=None: 0.0)
    cloud.fail_next(
        "provision", ProviderError("E2B answered 503", permanent=False, status_code=503), count=2
    )
    session = new_session()
    assert tasks.provision_session.apply(args=(session.pk,)).successful()
    assert ops.counts(ops.JOB_RETRY) == {"sessions.tasks.provision_session": 2}
    assert ops.counts(ops.PROVIDER_ERROR) == {"503": 2}
