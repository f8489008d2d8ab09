"""The job bodies against the fake provider: retries, fail-over, adoption, intervals."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from billing.models import CostEvent
from pools.models import CapacityPool
from pools.providers.base import ProviderError, SandboxSpec
from pools.providers.fake import FakeCloud, FakeProvider
from rensei.jobs import Transient
from rensei.models import Organization
from sessions import enqueue, jobs, services, tasks
from sessions.models import RunningInterval, Session, SessionState, SessionTransition
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool

S = SessionState


def provisioned(new_session: Callable[..., Session], **kw: Any) -> Session:
    session = new_session(**kw)
    jobs.provision(session.pk)
    session.refresh_from_db()
    return session


@pytest.mark.django_db
def test_provision_records_the_handle_and_opens_an_interval(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = provisioned(new_session, env={"TOKEN": "t0ps3cret"})
    assert session.state == S.RUNNING
    assert session.sandbox_id in cloud.sandboxes
    box = cloud.sandboxes[session.sandbox_id]
    assert box.metadata == {
        "rensei_org": "org-a",
        "rensei_session": str(session.pk),
        "rensei_request": str(session.request_id),
    }
    assert box.env == {"TOKEN": "t0ps3cret"}
    assert (session.template, session.vcpu, session.memory_mb) == ("donmai-worker", 2, 512)
    assert session.started_at is not None
    interval = RunningInterval.objects.get(session=session)
    assert interval.ended_at is None
    assert session.attempts == 1


@pytest.mark.django_db
def test_transient_error_asks_for_a_retry_then_succeeds(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    cloud.fail_next("provision", ProviderError("E2B answered 503", permanent=False), count=1)
    session = new_session()
    with pytest.raises(Transient, match="E2B answered 503"):
        jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.PROVISIONING
    assert "E2B answered 503" in session.last_error
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING and session.last_error == ""


@pytest.mark.django_db
def test_retry_after_is_honoured(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    cloud.fail_next("provision", ProviderError("429", permanent=False, retry_after=7))
    session = new_session()
    with pytest.raises(Transient) as raised:
        jobs.provision(session.pk)
    assert raised.value.retry_after == 7


@pytest.mark.django_db
def test_permanent_error_fails_over_to_the_next_pool(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    make_pool(org_a, "broken", order=1, config={"templateId": "missing-template"})
    second = make_pool(org_a, "good", order=2)
    cloud.known_templates = {"donmai-worker"}
    session = new_session()
    first_request = session.request_id
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.PROVISIONING
    assert session.pool == second
    assert session.request_id != first_request
    assert session.attempts == 0
    assert session.routing["failed_over"] == [
        {"pool": "broken", "reason": "Template 'missing-template' not found"}
    ]
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert len(cloud.sandboxes) == 1


@pytest.mark.django_db
def test_permanent_error_without_another_pool_fails_readably(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    cloud.fail_next("provision", ProviderError("E2B rejected this key (401).", permanent=True))
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.FAILED
    assert "E2B rejected this key (401)." in session.last_error
    assert "fake-1" in session.last_error


@pytest.mark.django_db
def test_transient_errors_past_the_retry_budget_fail(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    cloud.fail_next("provision", ProviderError("E2B answered 503", permanent=False), count=5)
    session = new_session()
    # The task as a worker runs it (in this process: the countdowns are not waited for).
    assert tasks.provision_session.apply(args=(session.pk,)).successful()
    session.refresh_from_db()
    assert session.state == S.FAILED
    assert "gave up after 5 tries" in session.last_error


@pytest.mark.django_db
def test_attempt_limit_stops_a_poison_task(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = new_session()
    # A crashed attempt left a sandbox behind before the worker died, five times over.
    FakeProvider("").provision(pool.config, jobs._spec(session))
    Session.objects.filter(pk=session.pk).update(attempts=jobs.MAX_PROVISION_ATTEMPTS)
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.FAILED
    assert session.last_error == "Gave up after 5 attempts (the job kept stopping)."
    assert cloud.sandboxes == {}  # nothing leaks


@pytest.mark.django_db
def test_a_duplicate_delivery_past_the_limit_gives_the_same_reason(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    """Seen in CI: two copies of the last job (Redis handed it back, the intent sweep sent it
    again) both moved the counter before either read it; the reason said 6 attempts."""
    session = new_session()
    Session.objects.filter(pk=session.pk).update(attempts=jobs.MAX_PROVISION_ATTEMPTS + 1)
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.FAILED
    assert session.last_error == "Gave up after 5 attempts (the job kept stopping)."


@pytest.mark.django_db
def test_retry_after_a_crash_adopts_the_sandbox_instead_of_creating_one(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = new_session()
    # The first attempt created the sandbox and died before saving the handle.
    Session.objects.filter(pk=session.pk).update(attempts=1)
    made = FakeProvider("").provision(pool.config, jobs._spec(session))
    cloud.idempotent.clear()  # prove it is the metadata look-up that finds it
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert session.sandbox_id == made.sandbox_id
    assert list(cloud.sandboxes) == [made.sandbox_id]
    assert [c for c in cloud.calls if c[0] == "provision"] == [("provision", "donmai-worker")]


@pytest.mark.django_db
def test_terminate_while_provisioning_kills_the_new_sandbox(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = new_session()
    original = FakeProvider.provision

    def slow_create(self: FakeProvider, config: Any, spec: SandboxSpec) -> Any:
        # The admin clicks Terminate while E2B is still creating the sandbox.
        assert services.request_terminate(Session.objects.get(pk=spec.session_id))
        return original(self, config, spec)

    monkeypatch.setattr(FakeProvider, "provision", slow_create)
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.TERMINATING
    assert session.sandbox_id == ""
    assert cloud.sandboxes == {}
    jobs.terminate(session.pk)
    session.refresh_from_db()
    assert session.state == S.TERMINATED
    assert not RunningInterval.objects.filter(session=session).exists()


@pytest.mark.django_db
def test_pause_resume_terminate_close_and_open_intervals_with_one_cost_event_each(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = provisioned(new_session)
    assert services.request_pause(session)
    jobs.pause(session.pk)
    session.refresh_from_db()
    assert session.state == S.PAUSED
    assert cloud.sandboxes[session.sandbox_id].state == "paused"
    first = RunningInterval.objects.get(session=session)
    assert first.closed_reason == "pause"
    assert CostEvent.objects.filter(session=session).count() == 1
    jobs.pause(session.pk)  # a redelivered job: no second event
    assert CostEvent.objects.filter(session=session).count() == 1

    assert services.request_resume(session)
    jobs.resume(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert cloud.sandboxes[session.sandbox_id].state == "running"
    assert RunningInterval.objects.filter(session=session, ended_at__isnull=True).count() == 1

    assert services.request_terminate(session)
    jobs.terminate(session.pk)
    jobs.terminate(session.pk)  # safe twice
    session.refresh_from_db()
    assert session.state == S.TERMINATED
    assert session.ended_at is not None
    assert cloud.sandboxes == {}
    assert CostEvent.objects.filter(session=session).count() == 2
    assert not RunningInterval.objects.filter(session=session, ended_at__isnull=True).exists()


@pytest.mark.django_db
def test_pausing_a_vanished_sandbox_marks_the_session_lost(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = provisioned(new_session)
    cloud.sandboxes.clear()
    assert services.request_pause(session)
    jobs.pause(session.pk)
    session.refresh_from_db()
    assert session.state == S.LOST
    assert "gone" in session.last_error
    assert RunningInterval.objects.get(session=session).closed_reason == "lost"
    assert CostEvent.objects.filter(session=session).count() == 1


@pytest.mark.django_db
def test_failed_pause_goes_back_to_running_with_the_reason(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    session = provisioned(new_session)
    cloud.fail_next("pause", ProviderError("E2B answered 503", permanent=False))
    assert services.request_pause(session)
    with pytest.raises(Transient):
        jobs.pause(session.pk)
    cloud.fail_next("pause", ProviderError("E2B refused access (403)", permanent=True))
    jobs.pause(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert session.last_error == "Pausing failed: E2B refused access (403)"
    # Still running, still billed: the interval never closed.
    assert RunningInterval.objects.filter(session=session, ended_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_terminates_make_exactly_one_transition(
    org_a: Organization,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr("sessions.enqueue.send", lambda name, *args: sent.append((name, args)))
    ensure_rate_cards()
    make_pool(org_a, "fake-1")
    session = provisioned(new_session)
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def click() -> None:
        try:
            barrier.wait()
            mine = Session.objects.get(pk=session.pk)
            results.append(services.request_terminate(mine, None, "api"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results.count(True) == 1
    assert SessionTransition.objects.filter(session=session, to_state=S.TERMINATING).count() == 1
    assert [name for name, _ in sent].count(enqueue.TERMINATE) == 1


@pytest.mark.django_db
def test_adopted_sandbox_gets_its_runner_when_the_pool_launches_it_inline(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    inline = {"templateId": "donmai-worker", "launchRunnerInline": True}
    pool = make_pool(org_a, "inline", config=inline)
    session = new_session()
    # The crashed attempt created the sandbox but died before launching the runner.
    bare = dict(pool.config, launchRunnerInline=False)
    made = FakeProvider("").provision(bare, jobs._spec(session))
    Session.objects.filter(pk=session.pk).update(attempts=1)
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING and session.sandbox_id == made.sandbox_id
    assert cloud.sandboxes[made.sandbox_id].commands == [jobs.RUNNER_IF_ABSENT]


@pytest.mark.django_db
def test_adopted_sandbox_whose_runner_cannot_start_is_killed(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    from pools.providers.base import ExecResult

    pool = make_pool(
        org_a, "inline", config={"templateId": "donmai-worker", "launchRunnerInline": True}
    )
    session = new_session()
    FakeProvider("").provision(dict(pool.config, launchRunnerInline=False), jobs._spec(session))
    Session.objects.filter(pk=session.pk).update(attempts=1)
    cloud.exec_handler = lambda box, command, env: ExecResult(127, "", "donmai: not found")
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.FAILED
    assert "launching `donmai agent run` failed (exit 127): donmai: not found" in (
        session.last_error
    )
    assert cloud.sandboxes == {}
