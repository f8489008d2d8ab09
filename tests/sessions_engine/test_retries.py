"""The task base class of the provider jobs: Retry-After first, else backoff, then give up.

The tasks run in this process with ``Task.apply`` (Celery's own eager run: the retry path
and the give-up path of a real delivery, every retry at once); the countdowns they asked
Celery for are recorded, never waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pools.models import CapacityPool
from pools.providers.base import ProviderError
from pools.providers.fake import FakeCloud
from rensei import jobs as provider_jobs
from rensei.models import AuditEvent
from sessions import jobs, services, tasks
from sessions.models import RunningInterval, Session, SessionState

S = SessionState
BUSY = ProviderError("E2B answered 503", permanent=False)


@pytest.fixture
def countdowns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Every countdown a task hands to Celery's retry, in order."""
    asked: list[float] = []
    real = provider_jobs.retry_countdown

    def recorded(retries: int, retry_after: float | None = None) -> float:
        asked.append(real(retries, retry_after))
        return asked[-1]

    monkeypatch.setattr(provider_jobs, "retry_countdown", recorded)
    yield asked


def run(task: Any, *args: Any) -> Any:
    return task.apply(args=args)


def running(new_session: Callable[..., Session]) -> Session:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    return session


def test_the_countdown_is_retry_after_within_bounds_else_backoff_with_jitter() -> None:
    assert provider_jobs.retry_countdown(0, 7) == 7
    assert provider_jobs.retry_countdown(3, 7) == 7  # the provider's word beats backoff
    assert provider_jobs.retry_countdown(0, 0.01) == 0.5
    assert provider_jobs.retry_countdown(0, 10_000) == 300
    for retries, base in ((0, 2), (1, 4), (2, 8), (3, 16), (9, 60)):
        assert base <= provider_jobs.retry_countdown(retries) <= base + 1


@pytest.mark.django_db
def test_retry_after_is_the_countdown_and_the_retry_succeeds(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    countdowns: list[float],
) -> None:
    cloud.fail_next("provision", ProviderError("429", permanent=False, retry_after=7), count=2)
    session = new_session()
    assert run(tasks.provision_session, session.pk).successful()
    session.refresh_from_db()
    assert session.state == S.RUNNING and session.last_error == ""
    assert countdowns == [7, 7]


@pytest.mark.django_db
def test_without_retry_after_the_countdown_backs_off(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    countdowns: list[float],
) -> None:
    cloud.fail_next("provision", BUSY, count=3)
    session = new_session()
    assert run(tasks.provision_session, session.pk).successful()
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert len(countdowns) == 3
    for wait, base in zip(countdowns, (2, 4, 8), strict=True):
        assert base <= wait <= base + 1


@pytest.mark.django_db
def test_provision_gives_up_after_its_retries_and_fails_readably(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    countdowns: list[float],
) -> None:
    cloud.fail_next("provision", BUSY, count=jobs.TRANSIENT_RETRIES + 2)
    session = new_session()
    assert run(tasks.provision_session, session.pk).successful()
    session.refresh_from_db()
    assert session.state == S.FAILED
    assert "E2B answered 503 (gave up after 5 tries)" in session.last_error
    assert len(countdowns) == jobs.TRANSIENT_RETRIES
    assert len(cloud.failures["provision"]) == 1  # 1 + 4 tries, not one more
    assert cloud.sandboxes == {}


@pytest.mark.django_db
def test_pause_gives_up_back_to_running_still_billed(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    countdowns: list[float],
) -> None:
    session = running(new_session)
    assert services.request_pause(session)
    cloud.fail_next("pause", BUSY, count=jobs.OTHER_RETRIES + 2)
    assert run(tasks.pause_session, session.pk).successful()
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert session.last_error == "Pausing failed: E2B answered 503"
    assert len(countdowns) == jobs.OTHER_RETRIES
    assert len(cloud.failures["pause"]) == 1
    assert RunningInterval.objects.filter(session=session, ended_at__isnull=True).exists()


@pytest.mark.django_db
def test_resume_gives_up_back_to_paused(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    countdowns: list[float],
) -> None:
    session = running(new_session)
    assert services.request_pause(session)
    jobs.pause(session.pk)
    assert services.request_resume(session)
    cloud.fail_next("resume", BUSY, count=jobs.OTHER_RETRIES + 1)
    assert run(tasks.resume_session, session.pk).successful()
    session.refresh_from_db()
    assert session.state == S.PAUSED
    assert session.last_error == "Resuming failed: E2B answered 503"
    assert not RunningInterval.objects.filter(session=session, ended_at__isnull=True).exists()


@pytest.mark.django_db
def test_terminate_gives_up_staying_terminating_for_the_reconciler(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    countdowns: list[float],
) -> None:
    session = running(new_session)
    assert services.request_terminate(session)
    cloud.fail_next("terminate", BUSY, count=jobs.OTHER_RETRIES + 1)
    assert run(tasks.terminate_session, session.pk).successful()
    session.refresh_from_db()
    assert session.state == S.TERMINATING
    assert session.last_error == "Terminating failed: E2B answered 503"
    assert AuditEvent.objects.filter(action="session.terminate_failed").count() == 1
    assert len(countdowns) == jobs.OTHER_RETRIES


@pytest.mark.django_db
def test_an_error_that_is_not_transient_is_not_retried(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    countdowns: list[float],
) -> None:
    session = running(new_session)
    assert services.request_pause(session)
    cloud.fail_next("pause", RuntimeError("a bug"))  # type: ignore[arg-type]
    result = run(tasks.pause_session, session.pk)
    assert result.failed() and isinstance(result.result, RuntimeError)
    assert countdowns == []
    session.refresh_from_db()
    assert session.state == S.PAUSING  # left for the reconciler's deadline
