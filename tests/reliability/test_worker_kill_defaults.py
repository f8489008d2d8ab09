"""A whole-worker SIGKILL while E2B is slow, with the production defaults.

No shortened Redis visibility timeout (an hour), kombu's own unacked sweeps, the
reconciler's 10- and 5-minute deadlines untouched and no reconcile pass: the jobs the dead
worker held (running, or reserved by it) sit in Redis' unacked set for the hour. What must
free or finish every one of them within 60 s of a worker being back is the intent sweep
(sessions.intents) alone.

Set-up: one worker (concurrency 2), three sessions running; then, all at once, three new
sessions, a pause, a terminate and a command in the third running session (``sleep 4``).
E2B answers every lifecycle call in 1.5 s, so the kill lands inside calls. The worker is
SIGKILLed (parent and children) once it holds jobs, started again 3 s later, and the clock
starts when it answers a ping.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pools.models import CapacityPool
from sessions import services
from sessions.models import CommandRun, CommandRunState, Session, SessionState
from tests.reliability.stack import (
    leaked_sandboxes,
    ledger_problems,
    require_redis_broker,
    running_stack,
    sessions_with_two_sandboxes,
    wait_until,
)
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool

S = SessionState
SLOW_MS = 1500
BOUND_S = 60.0  # every in-flight action settled within this of the worker being back
TRANSIENT = {S.QUEUED, S.PROVISIONING, S.PAUSING, S.RESUMING, S.TERMINATING}

pytestmark = pytest.mark.django_db(transaction=True)


def _create(org, pool: CapacityPool, key: str) -> Session:  # type: ignore[no-untyped-def]
    return services.create_session(
        org, issue_key=key, runtime_kinds=["npm"], requirement_kinds=["git"], pool_name=pool.name
    )


def test_whole_worker_sigkill_with_defaults_strands_nothing(  # type: ignore[no-untyped-def]
    org_a, django_db_blocker, figure
):
    require_redis_broker()
    fig = figure("worker_kill_defaults")
    ensure_rate_cards()
    with running_stack(django_db_blocker, workers=1, defaults=True) as stack:
        pool = make_pool(org_a, "slow", provider="e2b", config={"templateId": "donmai-worker"})
        first = [_create(org_a, pool, f"DEF-{i}") for i in range(3)]

        def running(sessions: list[Session]) -> bool:
            for s in sessions:
                s.refresh_from_db()
            return all(s.state == S.RUNNING for s in sessions)

        assert wait_until(lambda: running(first), timeout=60), [s.state for s in first]
        for endpoint in ("create", "get", "pause", "connect", "kill", "list"):
            stack.emulator.set_latency(SLOW_MS, endpoint)

        # Everything at once; intended end states are what each request asks for.
        to_pause, to_terminate, to_exec = first
        intended: dict[int, str] = {}
        new = [_create(org_a, pool, f"DEF-NEW-{i}") for i in range(3)]
        intended.update({s.pk: S.RUNNING for s in new})
        assert services.request_pause(to_pause)
        intended[to_pause.pk] = S.PAUSED
        assert services.request_terminate(to_terminate)
        intended[to_terminate.pk] = S.TERMINATED
        run = services.run_command(to_exec, command="sleep 4; echo done", timeout=30)
        intended[to_exec.pk] = S.RUNNING

        # Kill once the worker is inside its jobs (E2B takes 1.5 s per call).
        worker = stack.workers[0]
        time.sleep(1.0)
        states_at_kill = Counter(
            Session.objects.filter(pk__in=list(intended)).values_list("state", flat=True)
        )
        worker.kill()
        time.sleep(3.0)
        worker.start(wait=False)
        with django_db_blocker.unblock():
            worker.wait_ready(timeout=90)
        back = time.monotonic()
        stack.emulator.set_latency(0)

        def settled() -> bool:
            states = dict(Session.objects.filter(pk__in=list(intended)).values_list("pk", "state"))
            run.refresh_from_db()
            return not (set(states.values()) & TRANSIENT) and run.state not in (
                CommandRunState.QUEUED,
                CommandRunState.RUNNING,
            )

        done = wait_until(settled, timeout=BOUND_S + 30, interval=0.25)
        took = time.monotonic() - back
        final = dict(Session.objects.filter(pk__in=list(intended)).values_list("pk", "state"))
        run.refresh_from_db()
        wrong = {pk: (final[pk], want) for pk, want in intended.items() if final[pk] != want}

        # The end: every session terminated, then the audits.
        for s in Session.objects.filter(pk__in=list(intended)):
            if s.state in (S.RUNNING, S.PAUSED):
                services.request_terminate(s)
        ended = wait_until(
            lambda: (
                not Session.objects.filter(
                    pk__in=list(intended), state__in=[*TRANSIENT, S.RUNNING, S.PAUSED]
                ).exists()
            ),
            timeout=60,
        )
        sessions = list(Session.objects.filter(pk__in=list(intended)))
        leaks = leaked_sandboxes(stack.emu)
        doubles = sessions_with_two_sandboxes(stack.emu)
        problems, ledger = ledger_problems(sessions)
        fig.add(1)
        fig.unit = "whole-worker SIGKILL"
        fig.details = {
            "settings": "defaults: visibility timeout 3600 s, kombu's unacked sweeps, "
            "reconciler deadlines 10 / 5 min, no reconcile pass",
            "E2B latency per call (ms)": SLOW_MS,
            "in-flight actions": "3 provisions, 1 pause, 1 terminate, 1 command",
            "session states at the kill": dict(states_at_kill),
            "seconds from the worker back to every action settled": round(took, 1),
            "bound (s)": BOUND_S,
            "sessions in a wrong end state": len(wrong),
            "command outcome": f"{run.state}"
            + (f" ({run.error})" if run.error else f", exit {run.exit_code}"),
            "leaked sandboxes": len(leaks),
            "sessions with two sandboxes": len(doubles),
            "ledger problems (duplicate or missing cost events)": len(problems),
            **ledger,
        }
        assert done and took <= BOUND_S, f"not settled {took:.1f}s after the worker was back"
        assert not wrong, f"sessions in a wrong state: {wrong}"
        assert run.state in (CommandRunState.DONE, CommandRunState.ERROR)
        if run.state == CommandRunState.ERROR:  # it ran on the dead worker: not run twice
            assert "outcome is unknown" in run.error
        assert CommandRun.objects.filter(session=to_exec).count() == 1
        assert ended
        assert not leaks, f"leaked sandboxes: {leaks}"
        assert not doubles, f"sessions with two sandboxes: {doubles}"
        assert not problems, "\n".join(problems)
