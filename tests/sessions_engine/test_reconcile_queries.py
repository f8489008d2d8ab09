"""The reconciler's queries do not grow with the org: a pass over N sandboxes and N sessions
makes as many as a pass over 3N, in step with the provider or with the same few decisions
to make, so a pass over E2B's list costs a bounded number of queries per page of it.

A query per sandbox or per session (reading each session, each interval, each pool on its
own) makes the larger pass count more, and fails here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pools.models import CapacityPool
from pools.providers.fake import FakeCloud, FakeSandbox
from rensei.models import Organization
from sessions.models import RunningInterval, Session, SessionState
from sessions.reconcile import reconcile_org

S = SessionState
pytestmark = pytest.mark.django_db

N = 40
STEADY_BUDGET = 20  # the lease, the org, its provider kinds, one read of the live sessions…


def _fleet(org: Organization, pool: CapacityPool, cloud: FakeCloud, count: int) -> list[Session]:
    """``count`` running sessions, each with its interval and its sandbox in the cloud."""
    earlier = timezone.now() - timedelta(minutes=5)
    sessions = Session.objects.bulk_create(
        Session(
            org=org,
            pool=pool,
            provider="fake",
            state=S.RUNNING,
            sandbox_id=f"fake-q-{org.pk}-{i:05d}",
            vcpu=2,
            memory_mb=1024,
            started_at=earlier,
        )
        for i in range(count)
    )
    Session.objects.filter(org=org).update(state_changed_at=earlier)
    RunningInterval.objects.bulk_create(
        RunningInterval(session=s, started_at=earlier) for s in sessions
    )
    for s in sessions:
        tags = {"rensei_org": org.slug, "rensei_session": str(s.pk)}
        tags["rensei_request"] = str(s.request_id)
        cloud.sandboxes[s.sandbox_id] = FakeSandbox(
            s.sandbox_id, "donmai-worker", tags, {}, earlier
        )
    return sessions


def _drift(org: Organization, cloud: FakeCloud, sessions: list[Session]) -> None:
    """One sandbox gone behind our back, one paused behind it, one orphan."""
    del cloud.sandboxes[sessions[0].sandbox_id]
    cloud.sandboxes[sessions[1].sandbox_id].state = "paused"
    orphan = FakeSandbox(
        f"fake-orphan-{org.pk}", "donmai-worker", {"rensei_org": org.slug}, {}, timezone.now()
    )
    cloud.sandboxes[orphan.sandbox_id] = orphan


def _queries(org: Organization) -> tuple[int, dict[str, Any]]:
    with CaptureQueriesContext(connection) as ctx:
        summary = reconcile_org(org.pk)
    return len(ctx.captured_queries), summary


def _org(name: str, cloud: FakeCloud, count: int) -> tuple[Organization, list[Session]]:
    org = Organization.objects.create(name=name, slug=name)
    pool = CapacityPool.objects.create(
        org=org, name="fake", provider="fake", config={"templateId": "donmai-worker"}
    )
    return org, _fleet(org, pool, cloud, count)


def test_a_pass_in_step_makes_as_many_queries_over_3n_sandboxes_as_over_n(
    cloud: FakeCloud, rate_cards: None
) -> None:
    small, _ = _org("org-small", cloud, N)
    large, _ = _org("org-large", cloud, 3 * N)
    _queries(small)  # first passes: anything cached per process is cached now
    _queries(large)
    small_count, small_summary = _queries(small)
    large_count, large_summary = _queries(large)
    assert (small_summary["sandboxes_seen"], large_summary["sandboxes_seen"]) == (N, 3 * N)
    for summary in (small_summary, large_summary):
        assert not {k: v for k, v in summary.items() if v and k != "sandboxes_seen"}
    assert small_count == large_count
    assert large_count <= STEADY_BUDGET


def test_the_same_decisions_cost_as_many_queries_over_3n_sandboxes_as_over_n(
    cloud: FakeCloud, rate_cards: None
) -> None:
    small, small_sessions = _org("org-small", cloud, N)
    large, large_sessions = _org("org-large", cloud, 3 * N)
    _queries(small)
    _queries(large)
    _drift(small, cloud, small_sessions)
    _drift(large, cloud, large_sessions)
    small_count, small_summary = _queries(small)
    large_count, large_summary = _queries(large)
    for summary, sessions in ((small_summary, small_sessions), (large_summary, large_sessions)):
        assert (summary["lost"], summary["marked_paused"], summary["orphans_killed"]) == (1, 1, 1)
        states = dict(
            Session.objects.filter(pk__in=[s.pk for s in sessions[:3]]).values_list("pk", "state")
        )
        assert [states[s.pk] for s in sessions[:3]] == [S.LOST, S.PAUSED, S.RUNNING]
    assert small_count == large_count
    again = _queries(large)[1]  # and the next pass has nothing left to do
    assert not {k: v for k, v in again.items() if v and k != "sandboxes_seen"}
