"""The broker's side of things, on Redis: publish after commit, redelivery, poison tasks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import transaction

from billing.models import CostEvent
from rensei.celery import app
from sessions import jobs, services
from sessions.models import RunningInterval, Session, SessionState, SessionTransition
from tests.reliability.routes import build_world
from tests.reliability.stack import require_redis_broker, running_stack, wait_until
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool
from tests.worker import set_default_queue

S = SessionState
pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


@pytest.fixture
def idle_queue() -> Iterator[tuple[str, Any]]:
    """Publish to a queue nobody consumes, and count what lands there in Redis."""
    require_redis_broker()
    queue = f"reliability-idle-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    previous = app.conf.task_default_queue
    set_default_queue(queue)

    def length() -> int:
        return sum(int(client.llen(key)) for key in client.keys(f"{queue}*"))

    try:
        yield queue, length
    finally:
        set_default_queue(previous)
        for key in client.keys(f"{queue}*"):
            client.delete(key)


def test_jobs_are_published_only_after_commit(org_a, alice, idle_queue, figure):  # type: ignore[no-untyped-def]
    fig = figure("publish_after_commit")
    _, queued = idle_queue
    world = build_world(org_a, alice, "ORGA")
    running, paused = world.session, world.paused_session
    cases = {
        "create (provision)": lambda: services.create_session(
            org_a, issue_key="PUB-1", runtime_kinds=[], requirement_kinds=[]
        ),
        "exec": lambda: services.run_command(running, command="true"),
        "pause": lambda: services.request_pause(running),
        "resume": lambda: services.request_resume(paused),
        "terminate": lambda: services.request_terminate(running),
    }
    results = {}
    for name, action in cases.items():
        before = queued()
        states = sorted(Session.objects.values_list("pk", "state"))
        with pytest.raises(Rollback), transaction.atomic():
            action()
            assert queued() == before, f"{name}: published before the commit"
            raise Rollback
        rolled_back = queued() - before
        assert sorted(Session.objects.values_list("pk", "state")) == states
        with transaction.atomic():
            action()
            assert queued() == before
        committed = queued() - before
        results[name] = {"rolled back": rolled_back, "committed": committed}
        assert rolled_back == 0, f"{name}: a rolled-back transaction published {rolled_back}"
        assert committed == 1, f"{name}: a commit published {committed} messages"
        fig.add(2)
    fig.unit = "transactions"
    fig.details = {"messages in Redis per transaction": results}


def _transitions(session: Session, to: str) -> int:
    return SessionTransition.objects.filter(session=session, to_state=to).count()


def test_a_job_delivered_twice_changes_things_once(org_a, django_db_blocker, figure):  # type: ignore[no-untyped-def]
    require_redis_broker()
    fig = figure("redelivery")
    ensure_rate_cards()
    # Visibility 2 s, jobs held 5 s by the emulator: Redis hands each job out again while
    # the first delivery still runs, to the other worker.
    with running_stack(
        django_db_blocker, workers=2, concurrency=1, CELERY_VISIBILITY_TIMEOUT="2"
    ) as stack:
        make_pool(org_a, "slow", provider="e2b", config={"templateId": "donmai-worker"})
        session = services.create_session(
            org_a, issue_key="TWICE-1", runtime_kinds=["npm"], requirement_kinds=["git"]
        )
        with django_db_blocker.unblock():
            for worker in stack.workers[1:]:
                worker.wait_ready(timeout=90)
        assert wait_until(lambda: _state(session) == S.RUNNING, timeout=60)
        deliveries = {}
        for endpoint, request, done in (
            ("pause", services.request_pause, S.PAUSED),
            ("connect", services.request_resume, S.RUNNING),
            ("kill", services.request_terminate, S.TERMINATED),
        ):
            stack.emulator.set_latency(5000, endpoint)
            stack.emulator.clear_calls()
            assert request(session)
            assert wait_until(lambda d=done: _state(session) == d, timeout=90), _state(session)
            # Let every extra delivery finish before counting.
            wait_until(lambda: False, timeout=6)
            stack.emulator.set_latency(0, endpoint)
            deliveries[endpoint] = len(stack.emulator.calls_to(endpoint))
            fig.add()
        session.refresh_from_db()
        outcome = {
            "paused": _transitions(session, S.PAUSED),
            "resumed": _transitions(session, S.RUNNING) - 1,
            "terminated": _transitions(session, S.TERMINATED),
            "cost events": CostEvent.objects.filter(session=session).count(),
            "closed intervals": RunningInterval.objects.filter(
                session=session, ended_at__isnull=False
            ).count(),
        }
        fig.unit = "actions delivered twice"
        fig.details = {
            "E2B calls per action (2 or more: the job ran again)": deliveries,
            **outcome,
        }
        assert all(n >= 2 for n in deliveries.values()), f"no redelivery: {deliveries}"
        assert outcome == {
            "paused": 1,
            "resumed": 1,
            "terminated": 1,
            "cost events": 2,
            "closed intervals": 2,
        }


def _state(session: Session) -> str:
    session.refresh_from_db()
    return session.state


def test_a_poison_provision_stops_at_the_attempt_limit(org_a, django_db_blocker, figure):  # type: ignore[no-untyped-def]
    require_redis_broker()
    fig = figure("poison_task")
    ensure_rate_cards()
    with running_stack(django_db_blocker, workers=1) as stack:
        stack.arm_crashes(10_000)  # every provision job SIGKILLs its worker process
        make_pool(org_a, "poison", provider="e2b", config={"templateId": "donmai-worker"})
        sessions = [
            services.create_session(
                org_a, issue_key=f"POISON-{n}", runtime_kinds=["npm"], requirement_kinds=["git"]
            )
            for n in (1, 2)
        ]
        ended = wait_until(lambda: all(_state(s) == S.FAILED for s in sessions), timeout=150)
        crashes = 10_000 - int(stack.crash_counter.read_text())
        stack.arm_crashes(0)

        def no_sandboxes() -> bool:
            return not any(
                stack.emulator.sandboxes[sid].metadata.get("rensei_session")
                in {str(s.pk) for s in sessions}
                for sid in stack.emulator.sandbox_ids()
            )

        clean = wait_until(no_sandboxes, timeout=30)
        fig.add(crashes)
        fig.unit = "worker crashes"
        fig.details = {
            "sessions": len(sessions),
            "attempt limit": jobs.MAX_PROVISION_ATTEMPTS,
            "attempts recorded": [s.attempts for s in sessions],
            "final states": [s.state for s in sessions],
            "reason": sessions[0].last_error,
            "sandboxes left": 0 if clean else "some",
        }
        assert ended, [(_state(s), s.attempts) for s in sessions]
        for session in sessions:
            assert session.last_error == (
                f"Gave up after {jobs.MAX_PROVISION_ATTEMPTS} attempts (the job kept stopping)."
            )
        # At most the limit per session: a start runs only when its own count is within the
        # limit. A duplicate delivery (Redis handing a job back while the intent sweep sent it
        # again) may use one of the starts up without a crash, so fewer is possible.
        assert 0 < crashes <= 2 * jobs.MAX_PROVISION_ATTEMPTS
        assert clean, "a poisoned session left its sandbox behind"
