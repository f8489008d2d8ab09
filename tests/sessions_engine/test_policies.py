"""Pools' lifecycle policies (sessions/policies.py) against the fake provider.

The metrics come from a stub source handed to the pass (the provider contract's plain
samples), so each test decides what the box's CPU did; the pause and terminate requests and
their jobs are the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from pools.models import CapacityPool
from pools.providers.fake import FakeCloud
from rensei.celery import app
from rensei.models import AuditEvent, Organization
from sessions import jobs, policies, tasks
from sessions.models import PolicyAction, PolicyKind, Session, SessionState
from tests.sessions_engine.conftest import make_pool

S = SessionState
pytestmark = pytest.mark.django_db
STEP = timedelta(seconds=5)


@dataclass(frozen=True)
class Sample:
    at: datetime
    cpu_pct: float


class Metrics:
    """Samples every 5 s over the asked window at ``cpu`` % (``gap`` drops the first ones)."""

    def __init__(self, cpu: float, gap: timedelta = timedelta(0)) -> None:
        self.cpu, self.gap, self.calls = cpu, gap, 0

    def metrics(self, handle: object, start: datetime, end: datetime) -> list[Sample]:
        self.calls += 1
        out, at = [], start + self.gap
        while at <= end:
            out.append(Sample(at, self.cpu))
            at += STEP
        return out


@pytest.fixture
def idle_pool(org_a: Organization, cloud: FakeCloud, rate_cards: None) -> CapacityPool:
    config = {"templateId": "donmai-worker", "idlePauseMinutes": 10}
    return make_pool(org_a, "idle", order=1, config=config)


def running(new_session: Callable[..., Session]) -> Session:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    return session


def later(minutes: float) -> datetime:
    return timezone.now() + timedelta(minutes=minutes)


def test_idle_session_is_paused_through_the_service_path(
    idle_pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = running(new_session)
    won = policies.idle_pass(
        idle_pool, idle_pool.config, later(11), timedelta(minutes=1), Metrics(0.5)
    )
    assert won == 1
    session.refresh_from_db()
    assert session.state == S.PAUSING
    reason = "paused by the pool's idle policy: CPU under 2 % for 10 min"
    last = session.transitions.last()
    assert last is not None and last.note == f"pause requested by job: {reason}"
    event = AuditEvent.objects.get(action="session.pause_requested")
    assert event.channel == "job" and event.detail == {"reason": reason}
    mark = PolicyAction.objects.get()
    assert (mark.session, mark.kind, mark.action) == (session, PolicyKind.IDLE_PAUSE, "pause")
    jobs.pause(session.pk)  # the normal job: the interval closes (and is billed)
    session.refresh_from_db()
    assert session.state == S.PAUSED
    assert session.intervals.get().closed_reason == "pause"


def test_busy_box_is_not_paused(
    idle_pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = running(new_session)
    source = Metrics(2.0)  # at the threshold is not under it
    won = policies.idle_pass(idle_pool, idle_pool.config, later(11), timedelta(minutes=1), source)
    assert won == 0 and source.calls == 1
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert session.last_cpu_pct == 2.0 and session.last_metrics_at is not None  # list column
    assert not PolicyAction.objects.exists()


def test_threshold_comes_from_the_pool(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    config = {"templateId": "donmai-worker", "idlePauseMinutes": 10, "idleCpuPercent": 50}
    pool = make_pool(org_a, "lenient", order=1, config=config)
    session = running(new_session)
    assert policies.idle_pass(pool, pool.config, later(11), timedelta(minutes=1), Metrics(30))
    session.refresh_from_db()
    assert session.state == S.PAUSING
    assert "CPU under 50 % for 10 min" in PolicyAction.objects.get().reason


def test_too_few_samples_or_too_short_a_run_is_not_idle(
    idle_pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = running(new_session)
    # Samples only for the last few minutes of the window: not enough to judge by.
    sparse = Metrics(0.0, gap=timedelta(minutes=6))
    assert (
        policies.idle_pass(idle_pool, idle_pool.config, later(11), timedelta(minutes=1), sparse)
        == 0
    )
    # Running for 5 minutes only: not asked at all.
    early = Metrics(0.0)
    assert (
        policies.idle_pass(idle_pool, idle_pool.config, later(5), timedelta(minutes=1), early) == 0
    )
    assert early.calls == 0
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert policies.is_idle([], timezone.now() - STEP, timezone.now(), 2.0) is False


def test_two_passes_at_once_pause_once(
    idle_pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = running(new_session)
    stale = Session.objects.get(pk=session.pk)  # what a second, concurrent pass loaded
    now = later(11)
    assert policies.idle_pass(idle_pool, idle_pool.config, now, timedelta(minutes=1), Metrics(0))
    # The second pass acts on its stale row: the conditional move finds the state changed.
    assert stale.state == S.RUNNING
    assert policies._act(stale, PolicyKind.IDLE_PAUSE, "pause", "again", now) == 0
    assert (
        policies.idle_pass(idle_pool, idle_pool.config, now, timedelta(minutes=1), Metrics(0)) == 0
    )
    assert PolicyAction.objects.count() == 1
    assert AuditEvent.objects.filter(action="session.pause_requested").count() == 1
    assert session.transitions.filter(to_state=S.PAUSING).count() == 1


def test_paused_too_long_is_terminated(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    config = {"templateId": "donmai-worker", "pausedTerminateDays": 3}
    pool = make_pool(org_a, "tidy", order=1, config=config)
    session = running(new_session)
    policies._act(session, PolicyKind.IDLE_PAUSE, "pause", "setup", timezone.now())
    jobs.pause(session.pk)
    in_line = running(new_session)
    policies._act(in_line, PolicyKind.IDLE_PAUSE, "pause", "setup", timezone.now())
    jobs.pause(in_line.pk)
    Session.objects.filter(pk=in_line.pk).update(resume_requested_at=timezone.now())
    assert policies.paused_pass(pool, pool.config, timezone.now() + timedelta(days=2)) == 0
    assert (
        policies.paused_pass(pool, pool.config, timezone.now() + timedelta(days=3, minutes=1)) == 1
    )
    session.refresh_from_db()
    in_line.refresh_from_db()
    assert (session.state, in_line.state) == (S.TERMINATING, S.PAUSED)
    last = session.transitions.last()
    assert last is not None
    note = last.note
    assert note.endswith("terminated by the pool's paused-session policy: paused over 3 days")
    event = AuditEvent.objects.get(action="session.terminate_requested")
    assert event.channel == "job"


@pytest.mark.parametrize(
    ("action", "expected"), [("terminate", S.TERMINATING), ("pause", S.PAUSING)]
)
def test_age_limit_terminates_or_pauses(
    org_a: Organization,
    cloud: FakeCloud,
    rate_cards: None,
    new_session: Callable[..., Session],
    action: str,
    expected: str,
) -> None:
    config = {"templateId": "donmai-worker", "maxSessionHours": 2, "maxSessionAction": action}
    pool = make_pool(org_a, "short", order=1, config=config)
    session = running(new_session)
    assert policies.age_pass(pool, pool.config, timezone.now() + timedelta(hours=1)) == 0
    assert policies.age_pass(pool, pool.config, timezone.now() + timedelta(hours=2, minutes=1)) == 1
    session.refresh_from_db()
    assert session.state == expected
    mark = PolicyAction.objects.get()
    assert (mark.kind, mark.action) == (PolicyKind.MAX_AGE, action)
    assert "first ran over 2 h ago" in mark.reason


def test_beat_pass_reads_metrics_through_the_factory(
    idle_pool: CapacityPool,
    new_session: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = running(new_session)
    source = Metrics(0.1)
    monkeypatch.setattr(policies, "for_pool", lambda pool: source)
    done = policies.apply_policies(now=later(11))
    assert done[PolicyKind.IDLE_PAUSE] == 1 and source.calls == 1
    session.refresh_from_db()
    assert session.state == S.PAUSING


def test_beat_runs_the_registered_task_every_minute(
    idle_pool: CapacityPool, new_session: Callable[..., Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["lifecycle-policies"]
    assert entry == {"task": "sessions.tasks.apply_policies", "schedule": 60.0}
    assert entry["task"] in app.tasks and tasks.apply_policies.name == entry["task"]
    monkeypatch.setattr(policies, "for_pool", lambda pool: Metrics(0.0))
    session = running(new_session)
    then = later(11)
    monkeypatch.setattr(policies.timezone, "now", lambda: then)
    assert tasks.apply_policies.apply().get()[PolicyKind.IDLE_PAUSE] == 1
    session.refresh_from_db()
    assert session.state == S.PAUSING
