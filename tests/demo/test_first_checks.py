"""The demo's first checks (billing.demo_checks): queued by the seed, they wait for the
emulator, then test the key and check the pools the way a person would. End to end, with a
worker and the emulator: tests/demo/test_free_capacity.py."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from billing import demo_checks
from billing.models import ReconciliationRun
from pools.models import CapacityPool, HealthStatus, PoolHealthCheck
from rensei.models import AuditEvent, Credential, Organization
from tests.demo.conftest import LOCAL_EMULATOR, seed


@pytest.fixture
def requeued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What first_checks sends itself again, instead of sending it."""
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        demo_checks.first_checks, "apply_async", lambda args, countdown: sent.append(args)
    )
    return sent


@pytest.fixture
def checks_started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    started: list[int] = []
    monkeypatch.setattr(demo_checks.check_pool, "delay_on_commit", started.append)
    return started


def test_the_seed_says_the_worker_will_check(seeded: str, demo_org: Organization) -> None:
    assert "the worker tests the key, checks the pools and reconciles yesterday" in seeded
    assert demo_checks.due(demo_org)


def test_it_waits_while_the_emulator_is_down(
    demo_org: Organization, requeued: list[tuple[Any, ...]], checks_started: list[int]
) -> None:
    assert demo_checks.first_checks.run(demo_org.pk) == "waiting for the emulator"
    assert requeued == [(demo_org.pk, 1)]
    assert Credential.objects.get(org=demo_org).last_test_ok is None  # nothing tested yet
    assert checks_started == []


def test_after_its_last_wait_it_reports_what_it_met(
    demo_org: Organization, requeued: list[tuple[Any, ...]], checks_started: list[int]
) -> None:
    done = demo_checks.first_checks.run(demo_org.pk, demo_checks.TRIES - 1)
    assert requeued == []
    yesterday = timezone.now().date() - timedelta(days=1)
    assert done == f"key failed, checking demo-e2b, checking demo-base, reconciled {yesterday}"
    run = ReconciliationRun.objects.get(org=demo_org)  # the truth again: E2B was not listed
    assert (run.day, run.provider_seen, run.channel) == (yesterday, False, "job")
    assert "Could not reach E2B" in run.provider_error
    assert Credential.objects.get(org=demo_org).last_test_ok is False  # the truth: unreachable
    tested = AuditEvent.objects.get(org=demo_org, action="credential.tested")
    assert (tested.channel, tested.detail["result"]) == ("job", "failed")
    checks = PoolHealthCheck.objects.filter(pool__org=demo_org)
    assert sorted(checks_started) == sorted(checks.values_list("pk", flat=True))
    assert {c.channel for c in checks} == {"job"}
    running = CapacityPool.objects.filter(org=demo_org, health_status=HealthStatus.RUNNING)
    assert running.count() == 2
    # Checks under way are not started twice; a tested key is not tested again.
    assert not demo_checks.due(demo_org)
    assert demo_checks.first_checks.run(demo_org.pk, demo_checks.TRIES - 1) == "nothing to do"
    assert "the worker tests the key" not in seed()
    assert ReconciliationRun.objects.filter(org=demo_org).count() == 1


def test_the_port_probe(demo_settings: Any) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert demo_checks.emulator_answers(f"http://127.0.0.1:{port}")
    assert not demo_checks.emulator_answers(f"http://127.0.0.1:{port}")
    assert not demo_checks.emulator_answers(LOCAL_EMULATOR)


def test_a_missing_org_is_nothing_to_do(db: None) -> None:
    assert demo_checks.first_checks.run(10**9) == "nothing to do"
