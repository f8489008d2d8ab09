"""The engine end to end: service API → real Celery worker → real E2B SDK → local emulator.

One emulator and one worker serve the whole module. The worker runs with the crash hook
armed through a counter file that starts at 0 (no effect); a test writes N into it to make
the next N provision jobs SIGKILL their worker process right before saving the handle.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from billing.models import CostEvent
from pools.e2b_emulator.testing import RunningEmulator
from rensei.crypto import encrypt
from rensei.models import Credential, Organization
from sessions import reconcile, services
from sessions.models import CommandRun, CommandRunState, RunningInterval, Session, SessionState
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool
from tests.worker import WorkerProcess, emulator_with_worker

S = SessionState
API_KEY = "e2b_engine_test_key"
WAIT = 60  # seconds: a bound for polling, not a timing assertion

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Stack:
    emu: RunningEmulator
    worker: WorkerProcess
    crash_counter: Path

    def arm_crashes(self, n: int) -> None:
        self.crash_counter.write_text(str(n))

    def sandboxes_of(self, session: Session, state: str | None = None) -> list[str]:
        emulator = self.emu.emulator
        ids = emulator.sandbox_ids(state)
        return [
            i
            for i in ids
            if (sb := emulator.sandboxes.get(i)) is not None
            and sb.metadata.get("rensei_session") == str(session.pk)
        ]


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any) -> Iterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix="engine-crash-"))
    counter = tmp / "crashes"
    counter.write_text("0")
    with emulator_with_worker(
        django_db_blocker,
        api_key=API_KEY,
        RENSEI_FAILPOINTS=f"after-create=crash:{counter}",
        # Redeliver a killed child's task after 1 s instead of 10.
        CELERY_WORKER_LOST_WAIT="1",
    ) as (emu, worker):
        try:
            yield Stack(emu, worker, counter)
        finally:
            worker.kill()  # nothing to finish gracefully before the stop that follows
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_slate(stack: Stack) -> Iterator[None]:
    """Each test starts with no sandboxes, no armed crash and the rate cards present."""
    ensure_rate_cards()
    stack.arm_crashes(0)
    stack.emu.emulator.clear_calls()
    yield
    stack.arm_crashes(0)
    for sandbox_id in stack.emu.emulator.sandbox_ids():
        stack.emu.emulator.kill_sandbox(sandbox_id)


def wait_state(session: Session, *states: str, timeout: float = WAIT) -> Session:
    def check() -> bool:
        session.refresh_from_db()
        return session.state in states

    try:
        wait_for(check, timeout=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(
            f"session {session.pk} is {session.state} ({session.last_error!r}), expected {states}"
        ) from None
    return session


def run(session: Session, command: str, **kw: Any) -> CommandRun:
    command_run = services.run_command(session, command=command, **kw)

    def finished() -> bool:
        command_run.refresh_from_db()
        return command_run.state in (CommandRunState.DONE, CommandRunState.ERROR)

    wait_for(finished, timeout=WAIT, interval=0.1)
    return command_run


def create(org: Organization, **kw: Any) -> Session:
    kw.setdefault("issue_key", "ENG-142")
    return services.create_session(org, runtime_kinds=["npm"], requirement_kinds=["git"], **kw)


def test_whole_life_through_the_service_api(stack: Stack, org_a: Organization, alice: Any) -> None:
    make_pool(
        org_a,
        "demo-e2b",
        provider="e2b",
        config={"templateId": "donmai-worker", "launchRunnerInline": True},
    )
    session = create(org_a, actor=alice, env={"RENSEI_TOKEN": "tok-123"})
    wait_state(session, S.RUNNING)
    [sandbox_id] = stack.sandboxes_of(session)
    assert session.sandbox_id == sandbox_id
    box = stack.emu.emulator.sandboxes[sandbox_id]
    assert box.metadata["rensei_org"] == "org-a"
    assert box.metadata["rensei_request"] == str(session.request_id)
    assert (session.template, session.vcpu, session.memory_mb) == ("donmai-worker", 2, 1024)

    # launchRunnerInline: the runner runs inside this very box.
    runner = run(session, 'pgrep -f "donmai agent run"')
    assert runner.exit_code == 0, runner.stderr
    mine = run(
        session,
        'for p in $(pgrep -f "[d]onmai agent run"); do '
        'tr "\\0" "\\n" </proc/$p/environ | grep -qx "E2B_SANDBOX_ID=$E2B_SANDBOX_ID" '
        "&& exit 0; done; exit 1",
    )
    assert mine.exit_code == 0, "no donmai runner in this sandbox"

    which = run(session, "which donmai")
    assert which.exit_code == 0
    assert which.stdout.strip().endswith("/donmai")
    env_run = run(session, 'echo "$GREETING"', env={"GREETING": "hi from exec"})
    assert env_run.stdout == "hi from exec\n"
    assert env_run.env_names == ["GREETING"] and env_run.env_encrypted == ""

    assert services.request_pause(session, alice, "web")
    wait_state(session, S.PAUSED)
    assert stack.sandboxes_of(session, "paused") == [sandbox_id]
    interval = RunningInterval.objects.get(session=session)
    assert interval.ended_at is not None and interval.closed_reason == "pause"
    assert CostEvent.objects.filter(session=session).count() == 1

    assert services.request_resume(session, alice, "web")
    wait_state(session, S.RUNNING)
    assert stack.sandboxes_of(session, "running") == [session.sandbox_id]
    assert RunningInterval.objects.filter(session=session, ended_at__isnull=True).count() == 1

    assert services.request_terminate(session, alice, "web")
    wait_state(session, S.TERMINATED)
    assert stack.sandboxes_of(session) == []
    assert CostEvent.objects.filter(session=session).count() == 2


def test_worker_killed_after_create_adopts_the_sandbox(stack: Stack, org_a: Organization) -> None:
    make_pool(org_a, "demo-e2b", provider="e2b", config={"templateId": "donmai-worker"})
    stack.arm_crashes(1)
    session = create(org_a)
    wait_state(session, S.RUNNING)
    assert stack.crash_counter.read_text() == "0", "the worker did not crash"
    assert session.attempts == 2
    assert stack.sandboxes_of(session) == [session.sandbox_id]
    assert len(stack.emu.emulator.calls_to("create")) == 1


def test_poison_provision_stops_at_the_attempt_limit(stack: Stack, org_a: Organization) -> None:
    make_pool(org_a, "demo-e2b", provider="e2b", config={"templateId": "donmai-worker"})
    stack.arm_crashes(99)
    session = create(org_a)
    wait_state(session, S.FAILED, timeout=120)
    assert session.last_error == "Gave up after 5 attempts (the job kept stopping)."
    wait_for(lambda: stack.sandboxes_of(session) == [], timeout=WAIT)


def test_503s_on_create_still_reach_running(stack: Stack, org_a: Organization) -> None:
    make_pool(org_a, "demo-e2b", provider="e2b", config={"templateId": "donmai-worker"})
    # The SDK retries a 503 three times by itself; six outlast it, so our own retry runs.
    stack.emu.emulator.fail_next("create", count=6, status=503)
    session = create(org_a)
    wait_state(session, S.RUNNING)
    statuses = [c.status for c in stack.emu.emulator.calls_to("create")]
    assert statuses.count(503) == 6 and statuses[-1] == 201
    assert stack.sandboxes_of(session) == [session.sandbox_id]


def test_unknown_template_fails_over_and_a_rejected_key_fails_readably(
    stack: Stack, org_a: Organization, org_b: Organization
) -> None:
    make_pool(org_a, "broken", provider="e2b", order=1, config={"templateId": "no-such-tpl"})
    make_pool(org_a, "good", provider="e2b", order=2, config={"templateId": "donmai-worker"})
    session = create(org_a)
    wait_state(session, S.RUNNING)
    assert session.pool is not None and session.pool.name == "good"
    assert session.routing["failed_over"][0]["pool"] == "broken"
    assert "no-such-tpl" in session.routing["failed_over"][0]["reason"]

    Credential.objects.create(
        org=org_b, provider="e2b", secret_encrypted=encrypt("e2b_wrong_key"), last_four="_key"
    )
    make_pool(org_b, "b-pool", provider="e2b", config={"templateId": "donmai-worker"})
    rejected = create(org_b)
    wait_state(rejected, S.FAILED)
    assert "E2B rejected this key (401)." in rejected.last_error


def test_cap_two_third_session_waits_then_runs(stack: Stack, org_a: Organization) -> None:
    make_pool(
        org_a, "capped", provider="e2b", concurrency_cap=2, config={"templateId": "donmai-worker"}
    )
    first, second = create(org_a), create(org_a)
    third = create(org_a)
    assert third.state == S.QUEUED
    assert third.routing["waiting_for"] == ["capped"]
    wait_state(first, S.RUNNING)
    wait_state(second, S.RUNNING)
    third.refresh_from_db()
    assert third.state == S.QUEUED
    assert services.request_terminate(first)
    wait_state(first, S.TERMINATED)
    wait_state(third, S.RUNNING)
    assert stack.sandboxes_of(third) == [third.sandbox_id]


def test_reconciler_against_the_emulator(stack: Stack, org_a: Organization) -> None:
    from e2b import Sandbox

    make_pool(org_a, "demo-e2b", provider="e2b", config={"templateId": "donmai-worker"})
    paused_outside, killed_outside = create(org_a), create(org_a)
    wait_state(paused_outside, S.RUNNING)
    wait_state(killed_outside, S.RUNNING)
    orphan = Sandbox.create(
        template="base",
        metadata={"rensei_org": "org-a", "rensei_session": "424242"},
        **stack.emu.sdk_kwargs,
    )
    stack.emu.emulator.pause_sandbox(paused_outside.sandbox_id)  # e2b sandbox pause <id>
    stack.emu.emulator.kill_sandbox(killed_outside.sandbox_id)

    summary = reconcile.reconcile_org(org_a.pk)
    assert (summary["orphans_killed"], summary["marked_paused"], summary["lost"]) == (1, 1, 1)
    assert orphan.sandbox_id not in stack.emu.emulator.sandbox_ids()
    paused_outside.refresh_from_db()
    assert paused_outside.state == S.PAUSED
    killed_outside.refresh_from_db()
    assert killed_outside.state == S.LOST
    assert RunningInterval.objects.get(session=killed_outside).closed_reason == "lost"
    assert CostEvent.objects.filter(session=killed_outside).count() == 1

    again = reconcile.reconcile_org(org_a.pk)
    assert {k: v for k, v in again.items() if v and k != "sandboxes_seen"} == {}
