"""The sessions list's CPU column is filled by a beat job (sessions/cpu_samples.py): one
metrics call per running sandbox without a fresh sample, the latest sample stored on the
session, never over a newer one. Against the fake provider; with the real SDK and the
emulator: tests/sessions_web/test_inside_the_box_e2e.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from pools.models import CapacityPool
from pools.providers.base import ProviderError
from pools.providers.fake import FakeCloud
from rensei.celery import app
from sessions import cpu_samples, jobs, tasks
from sessions.models import Session, SessionState
from tests.sessions_engine.conftest import make_pool

S = SessionState
pytestmark = pytest.mark.django_db


def running(new_session: Callable[..., Session], cloud: FakeCloud, cpu: float) -> Session:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    cloud.sandboxes[session.sandbox_id].cpu_pct = cpu
    return session


def metrics_calls(cloud: FakeCloud) -> list[str]:
    return [subject for operation, subject in cloud.calls if operation == "metrics"]


def test_each_running_sandbox_gets_its_latest_sample(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    busy, quiet = running(new_session, cloud, 61.5), running(new_session, cloud, 0.5)
    ended = running(new_session, cloud, 99.0)
    Session.objects.filter(pk=ended.pk).update(state=S.TERMINATED)

    assert cpu_samples.sample_running() == 2
    assert sorted(metrics_calls(cloud)) == sorted([busy.sandbox_id, quiet.sandbox_id])
    busy.refresh_from_db()
    quiet.refresh_from_db()
    assert (busy.last_cpu_pct, quiet.last_cpu_pct) == (61.5, 0.5)
    assert busy.last_metrics_at is not None
    assert Session.objects.get(pk=ended.pk).last_cpu_pct is None


def test_a_fresh_sample_is_not_asked_for_again(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = running(new_session, cloud, 10.0)
    assert cpu_samples.sample_running() == 1
    cloud.calls.clear()
    assert cpu_samples.sample_running() == 0  # sampled a moment ago
    assert metrics_calls(cloud) == []
    later = timezone.now() + cpu_samples.FRESH_FOR + timedelta(seconds=5)
    cloud.sandboxes[session.sandbox_id].cpu_pct = 20.0
    assert cpu_samples.sample_running(now=later) == 1
    session.refresh_from_db()
    assert session.last_cpu_pct == 20.0


def test_the_oldest_samples_go_first_within_the_limit(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    never, old, older = (running(new_session, cloud, 5.0) for _ in range(3))
    now = timezone.now()
    Session.objects.filter(pk=old.pk).update(last_metrics_at=now - timedelta(minutes=2))
    Session.objects.filter(pk=older.pk).update(last_metrics_at=now - timedelta(minutes=9))
    assert cpu_samples.sample_running(now=now, limit=2) == 2
    assert metrics_calls(cloud) == [never.sandbox_id, older.sandbox_id]


def test_a_newer_sample_is_never_overwritten(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = running(new_session, cloud, 30.0)
    now = timezone.now()
    assert cpu_samples.remember_cpu(session.pk, now, 44.0)
    assert not cpu_samples.remember_cpu(session.pk, now - timedelta(seconds=1), 12.0)
    session.refresh_from_db()
    assert (session.last_cpu_pct, session.last_metrics_at) == (44.0, now)


def test_a_provider_error_skips_that_sandbox_only(
    org_a: object,
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = running(new_session, cloud, 7.0), running(new_session, cloud, 8.0)
    cloud.fail_next("metrics", ProviderError("E2B answered 500: boom.", permanent=False))
    assert cpu_samples.sample_running() == 1
    values = dict(
        Session.objects.filter(pk__in=[first.pk, second.pk]).values_list("pk", "last_cpu_pct")
    )
    assert values == {first.pk: None, second.pk: 8.0}
    assert f"no CPU sample for session {first.pk}: E2B answered 500: boom." in caplog.text


def test_a_pool_whose_provider_is_unknown_is_skipped(
    org_a: object, pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = running(new_session, cloud, 7.0)
    other = make_pool(pool.org, "gone", order=2)
    CapacityPool.objects.filter(pk=other.pk).update(provider="retired")
    Session.objects.filter(pk=session.pk).update(pool=other)
    assert cpu_samples.sample_running() == 0
    assert metrics_calls(cloud) == []


def test_beat_samples_every_minute(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["cpu-samples"]
    assert (entry["task"], entry["schedule"]) == ("sessions.tasks.sample_cpu", 60.0)
    assert entry["task"] in app.tasks and tasks.sample_cpu.name == entry["task"]
    running(new_session, cloud, 3.0)
    assert tasks.sample_cpu.apply().get() == 1
