"""E2B misbehaving: an answer lost after the sandbox was made, 429 and 503 storms.

The tasks run in this process against the emulator (``Task.apply``: the task's own retry
policy and give-up path, each retry at once): the countdowns they ask Celery for are read
as values, never timed.
"""

from __future__ import annotations

from typing import Any

import pytest

from billing.models import CostEvent
from pools.models import CapacityPool
from rensei import jobs as provider_jobs
from rensei.jobs import Transient
from sessions import jobs, reconcile, services, tasks
from sessions.models import Session, SessionState
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool

S = SessionState
RETRY_AFTER = 3  # seconds E2B asks for
# The emulator's sandboxes are processes on one host: find a runner of this very sandbox.
# The launch is in the background: give it up to 5 s to show up.
THIS_SANDBOX_RUNS_DONMAI = (
    "for _ in $(seq 50); do "
    'for p in $(pgrep -f "[d]onmai agent run"); do '
    'tr "\\0" "\\n" </proc/$p/environ | grep -qx "E2B_SANDBOX_ID=$E2B_SANDBOX_ID" '
    "&& exit 0; done; sleep 0.1; done; exit 1"
)


@pytest.fixture
def pool(org_a, e2b_settings) -> CapacityPool:  # type: ignore[no-untyped-def]
    ensure_rate_cards()
    return make_pool(org_a, "faulty", provider="e2b", config={"templateId": "donmai-worker"})


def _new(org: Any, pool: CapacityPool, key: str) -> Session:
    return services.create_session(
        org, issue_key=key, runtime_kinds=["npm"], requirement_kinds=["git"], pool_name=pool.name
    )


def _made_for(emu: Any, session: Session) -> list[str]:
    return [
        sid
        for sid in emu.emulator.sandbox_ids()
        if emu.emulator.sandboxes[sid].metadata.get("rensei_session") == str(session.pk)
    ]


def _creates_for(emu: Any, session: Session) -> list[Any]:
    return [
        c
        for c in emu.emulator.calls_to("create")
        if ((c.body or {}).get("metadata") or {}).get("rensei_session") == str(session.pk)
    ]


def _run(task: Any, session_id: int) -> list[float]:
    """Run a task as its worker would, retry after retry (give-up included); the countdowns
    it asked for."""
    countdowns: list[float] = []
    real = provider_jobs.retry_countdown

    def recorded(retries: int, retry_after: float | None = None) -> float:
        countdowns.append(real(retries, retry_after))
        return countdowns[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(provider_jobs, "retry_countdown", recorded)
        result = task.apply(args=(session_id,))
    assert result.successful(), result.traceback
    return countdowns


def test_ambiguous_create_is_adopted_never_doubled(org_a, pool, e2b_settings, figure):  # type: ignore[no-untyped-def]
    fig = figure("ambiguous_create")
    emu = e2b_settings
    inline = make_pool(
        org_a,
        "inline",
        provider="e2b",
        order=5,
        config={"templateId": "donmai-worker", "launchRunnerInline": True},
    )
    outcomes = []
    # The retried job adopts it: three plain pools and one that launches the runner inline.
    for n, target in enumerate([pool, pool, pool, inline], start=1):
        emu.emulator.drop_next_create()
        session = _new(org_a, target, f"DROP-{n}")
        countdowns = _run(tasks.provision_session, session.pk)
        session.refresh_from_db()
        creates = _creates_for(emu, session)
        assert countdowns, "the dropped answer should have looked like a transient failure"
        assert session.state == S.RUNNING, session.last_error
        assert len(creates) == 1 and creates[0].dropped, "a second sandbox was asked for"
        assert _made_for(emu, session) == [session.sandbox_id] == [creates[0].sandbox_id]
        if target == inline:
            runner = services.run_command(session, command=THIS_SANDBOX_RUNS_DONMAI)
            jobs.exec_command(runner.pk)
            runner.refresh_from_db()
            assert runner.exit_code == 0, "the adopted sandbox runs no donmai runner"
        outcomes.append("adopted by the retried job")
        fig.add()
    # The job never comes back (its worker died for good): the reconciler adopts it.
    emu.emulator.drop_next_create()
    session = _new(org_a, pool, "DROP-5")
    with pytest.raises(Transient):
        jobs.provision(session.pk)
    grace, reconcile.ADOPT_GRACE = reconcile.ADOPT_GRACE, reconcile.ADOPT_GRACE * 0
    try:
        summary = reconcile.reconcile_org(org_a.pk)
    finally:
        reconcile.ADOPT_GRACE = grace
    session.refresh_from_db()
    assert summary["adopted"] == 1 and session.state == S.RUNNING
    assert len(_creates_for(emu, session)) == 1
    assert _made_for(emu, session) == [session.sandbox_id]
    outcomes.append("adopted by the reconciler")
    fig.add()
    fig.unit = "dropped creates"
    fig.details = {
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
        "second sandboxes created": 0,
    }


STORM_STEPS = [
    # (endpoint, task, state before, state after)
    ("create", tasks.provision_session, S.PROVISIONING, S.RUNNING),
    ("pause", tasks.pause_session, S.PAUSING, S.PAUSED),
    ("connect", tasks.resume_session, S.RESUMING, S.RUNNING),
    ("kill", tasks.terminate_session, S.TERMINATING, S.TERMINATED),
]


def _request(session: Session, endpoint: str) -> None:
    action = {"pause": "pause", "connect": "resume", "kill": "terminate"}.get(endpoint)
    if action:
        assert getattr(services, f"request_{action}")(session)


def test_429_storms_honour_retry_after(org_a, pool, e2b_settings, figure):  # type: ignore[no-untyped-def]
    fig = figure("storm_429")
    emu = e2b_settings.emulator
    session = _new(org_a, pool, "STORM-429")
    countdowns: dict[str, list[float]] = {}
    for endpoint, task, _before, after in STORM_STEPS:
        _request(session, endpoint)
        # Should-Retry: false, so the SDK does not retry by itself: every 429 reaches the
        # job, and only the task's own countdown spaces the calls.
        emu.fail_next(endpoint, count=2, status=429, retry_after=RETRY_AFTER, should_retry=False)
        emu.clear_calls()
        countdowns[endpoint] = _run(task, session.pk)
        session.refresh_from_db()
        assert session.state == after, (endpoint, session.state, session.last_error)
        rate_limited = [c for c in emu.calls_to(endpoint) if c.status == 429]
        assert len(rate_limited) == 2, endpoint
        assert all(c.response_headers.get("retry-after") == str(RETRY_AFTER) for c in rate_limited)
        fig.add(len(countdowns[endpoint]))
    fig.unit = "rate-limited calls"
    fig.details = {
        "Retry-After (s)": RETRY_AFTER,
        "countdowns used (s)": {k: [round(v, 2) for v in vs] for k, vs in countdowns.items()},
        "retries per call, at most": max(len(v) for v in countdowns.values()),
        "cost events": CostEvent.objects.filter(session=session).count(),
    }
    for endpoint, used in countdowns.items():
        assert len(used) == 2, (endpoint, used)
        assert all(wait >= RETRY_AFTER for wait in used), (endpoint, used)
    assert CostEvent.objects.filter(session=session).count() == 2


def test_503_bursts_end_right(org_a, pool, e2b_settings, figure):  # type: ignore[no-untyped-def]
    fig = figure("storm_503")
    emu = e2b_settings.emulator
    session = _new(org_a, pool, "STORM-503")
    retries: dict[str, int] = {}
    for endpoint, task, _before, after in STORM_STEPS:
        _request(session, endpoint)
        # The SDK retries a bare 503 three times by itself; eight outlast it twice.
        emu.fail_next(endpoint, count=8, status=503)
        limit = task.max_retries or 0
        used = _run(task, session.pk)
        retries[endpoint] = len(used)
        session.refresh_from_db()
        assert session.state == after, (endpoint, session.state, session.last_error)
        assert len(used) <= limit
        fig.add(8)
    # A burst longer than the whole budget: the session fails with the reason, no sandbox.
    emu.fail_next("create", count=200, status=503)
    doomed = _new(org_a, pool, "STORM-503-LONG")
    used = _run(tasks.provision_session, doomed.pk)
    emu.faults.clear()
    doomed.refresh_from_db()
    assert doomed.state == S.FAILED
    assert "503" in doomed.last_error and "gave up" in doomed.last_error, doomed.last_error
    assert _made_for(e2b_settings, doomed) == []
    fig.add(len(used) + 1)
    fig.unit = "failed calls"
    fig.details = {
        "job retries after the SDK's own, per call": retries,
        "retry budget (provision / others)": f"{jobs.TRANSIENT_RETRIES} / {jobs.OTHER_RETRIES}",
        "endless burst": f"failed after {len(used)} retries: {doomed.last_error[:120]}",
        "cost events of the session that made it": CostEvent.objects.filter(
            session=session
        ).count(),
    }
