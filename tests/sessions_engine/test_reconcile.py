"""The reconciler against the fake provider: each kind of drift, then a quiet second pass."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import CostEvent
from pools.models import CapacityPool
from pools.providers.base import SandboxSpec
from pools.providers.fake import FakeCloud, FakeProvider
from rensei.models import AuditEvent, Organization
from sessions import jobs, reconcile, services
from sessions.models import RunningInterval, Session, SessionState
from sessions.reconcile import reconcile_org

S = SessionState
pytestmark = pytest.mark.django_db

NOTHING = dict.fromkeys(reconcile.SUMMARY_KEYS, 0)


def quiet(summary: dict[str, int]) -> dict[str, int]:
    """The summary without the informational count of sandboxes seen."""
    return {k: v for k, v in summary.items() if k != "sandboxes_seen"}


def running(new_session: Callable[..., Session]) -> Session:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    return session


def test_consistent_world_changes_nothing(
    pool: CapacityPool, new_session: Callable[..., Session], org_a: Organization
) -> None:
    running(new_session)
    summary = reconcile_org(org_a.pk)
    assert summary["sandboxes_seen"] == 1
    assert quiet(summary) == quiet(NOTHING)


def test_orphan_is_killed_and_audited(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session], org_a: Organization
) -> None:
    keep = running(new_session)
    orphan = FakeProvider("").provision(
        pool.config, SandboxSpec(session_id="999999", request_id="r-1", org_slug="org-a")
    )
    ended = running(new_session)
    Session.objects.filter(pk=ended.pk).update(state=S.TERMINATED)  # record ended, box did not
    other_org = FakeProvider("").provision(
        pool.config, SandboxSpec(session_id="5", request_id="r-2", org_slug="org-b")
    )
    summary = reconcile_org(org_a.pk)
    assert summary["orphans_killed"] == 2
    assert sorted(cloud.sandboxes) == sorted([keep.sandbox_id, other_org.sandbox_id])
    assert orphan.sandbox_id not in cloud.sandboxes
    assert AuditEvent.objects.filter(action="sandbox.orphan_killed", channel="job").count() == 2
    assert quiet(reconcile_org(org_a.pk)) == quiet(NOTHING)


def test_sandbox_paused_and_resumed_behind_our_back(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session], org_a: Organization
) -> None:
    session = running(new_session)
    cloud.sandboxes[session.sandbox_id].state = "paused"  # e2b sandbox pause <id>
    assert reconcile_org(org_a.pk)["marked_paused"] == 1
    session.refresh_from_db()
    assert session.state == S.PAUSED
    assert RunningInterval.objects.get(session=session).ended_at is not None
    assert CostEvent.objects.filter(session=session).count() == 1
    assert quiet(reconcile_org(org_a.pk)) == quiet(NOTHING)

    cloud.sandboxes[session.sandbox_id].state = "running"  # e2b sandbox resume <id>
    assert reconcile_org(org_a.pk)["marked_running"] == 1
    session.refresh_from_db()
    assert session.state == S.RUNNING
    assert RunningInterval.objects.filter(session=session, ended_at__isnull=True).count() == 1
    assert quiet(reconcile_org(org_a.pk)) == quiet(NOTHING)


def test_sandbox_killed_behind_our_back_marks_the_session_lost(
    pool: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session], org_a: Organization
) -> None:
    session = running(new_session)
    Session.objects.filter(pk=session.pk).update(
        state_changed_at=timezone.now() - timedelta(seconds=5)
    )
    del cloud.sandboxes[session.sandbox_id]
    assert reconcile_org(org_a.pk)["lost"] == 1
    session.refresh_from_db()
    assert session.state == S.LOST
    assert (
        session.last_error == f"The sandbox {session.sandbox_id} no longer exists in the provider."
    )
    interval = RunningInterval.objects.get(session=session)
    assert interval.closed_reason == "lost"
    assert CostEvent.objects.filter(session=session).count() == 1
    assert quiet(reconcile_org(org_a.pk)) == quiet(NOTHING)


def test_unrecorded_sandbox_of_a_provisioning_session_is_adopted_not_killed(
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    org_a: Organization,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = new_session()
    made = FakeProvider("").provision(pool.config, jobs._spec(session))  # worker died here
    # Seconds old: the provision job may still record it itself, so it is left alone.
    assert quiet(reconcile_org(org_a.pk)) == quiet(NOTHING)
    assert made.sandbox_id in cloud.sandboxes
    monkeypatch.setattr(reconcile, "ADOPT_GRACE", timedelta(0))
    assert reconcile_org(org_a.pk)["adopted"] == 1
    session.refresh_from_db()
    assert session.state == S.RUNNING and session.sandbox_id == made.sandbox_id
    assert list(cloud.sandboxes) == [made.sandbox_id]
    # The redelivered provision job now finds nothing to do and makes nothing.
    jobs.provision(session.pk)
    assert list(cloud.sandboxes) == [made.sandbox_id]


def test_fresh_health_check_sandbox_is_left_alone_stale_one_killed(
    pool: CapacityPool, cloud: FakeCloud, org_a: Organization
) -> None:
    spec = SandboxSpec(session_id="health-check-7", request_id="hc-7", org_slug="org-a")
    made = FakeProvider("").provision(pool.config, spec)
    assert reconcile_org(org_a.pk)["orphans_killed"] == 0
    cloud.sandboxes[made.sandbox_id].started_at -= timedelta(minutes=10)
    assert reconcile_org(org_a.pk)["orphans_killed"] == 1
    assert cloud.sandboxes == {}


def test_stuck_sessions_get_their_job_again_or_fail(
    pool: CapacityPool,
    new_session: Callable[..., Session],
    org_a: Organization,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, tuple[object, ...]]] = []
    monkeypatch.setattr("sessions.enqueue.send", lambda name, *args: sent.append((name, args)))
    long_ago = timezone.now() - timedelta(minutes=30)
    pausing = running(new_session)
    assert services.request_pause(pausing)
    stuck = new_session()
    hopeless = new_session()
    Session.objects.filter(pk=hopeless.pk).update(attempts=jobs.MAX_PROVISION_ATTEMPTS)
    Session.objects.filter(pk__in=[pausing.pk, stuck.pk, hopeless.pk]).update(
        state_changed_at=long_ago
    )
    sent.clear()
    summary = reconcile_org(org_a.pk)
    assert summary["retried"] == 2
    assert summary["failed"] == 1
    assert sorted(sent) == sorted(
        [
            ("sessions.tasks.pause_session", (pausing.pk,)),
            ("sessions.tasks.provision_session", (stuck.pk,)),
        ]
    )
    hopeless.refresh_from_db()
    assert hopeless.state == S.FAILED
    assert hopeless.last_error.startswith("Gave up after 5 attempts")
    sent.clear()
    assert quiet(reconcile_org(org_a.pk)) == quiet(NOTHING)
    assert sent == []


def test_management_command_prints_a_summary(
    pool: CapacityPool, cloud: FakeCloud, org_a: Organization
) -> None:
    FakeProvider("").provision(
        pool.config, SandboxSpec(session_id="424242", request_id="r", org_slug="org-a")
    )
    out = StringIO()
    call_command("reconcile", "--org", "org-a", stdout=out)
    assert "org-a: sandboxes seen 1, orphans killed 1" in out.getvalue()
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "org-a: nothing to do" in out.getvalue()
