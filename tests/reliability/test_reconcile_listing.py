"""The reconciler marks a session ``lost`` only when the provider positively says its sandbox
is gone, never because asking failed.

A running session whose sandbox is really gone sits beside one whose sandbox is fine; then
the provider fails the list (503, a refused connection, a 401), or lists nothing and fails
the direct look-up. Nothing may be marked lost, and the pass reports the error. Only a
look-up that answers "not found" marks the session lost.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from pools.models import CapacityPool
from pools.providers.base import ProviderError
from pools.providers.fake import FakeCloud
from rensei.models import Organization
from sessions import jobs
from sessions.models import Session, SessionState
from sessions.reconcile import reconcile_org

S = SessionState
pytestmark = pytest.mark.django_db

FAILURES = {
    "503": ProviderError("E2B is temporarily unavailable (503).", permanent=False, status_code=503),
    "unreachable": ProviderError(
        "Could not reach E2B at api.e2b.dev (ConnectError).", permanent=False
    ),
    "timeout": ProviderError("E2B did not answer within 5 s.", permanent=False, status_code=504),
    "401": ProviderError("E2B rejected this key (401).", permanent=True, status_code=401),
}


def _two_running(new_session: Callable[..., Session], cloud: FakeCloud) -> tuple[Session, Session]:
    """Two running sessions, settled a moment ago; the first one's sandbox is gone."""
    out = []
    for _ in range(2):
        session = new_session()
        jobs.provision(session.pk)
        session.refresh_from_db()
        assert session.state == S.RUNNING
        out.append(session)
    Session.objects.filter(pk__in=[s.pk for s in out]).update(
        state_changed_at=timezone.now() - timedelta(seconds=5)
    )
    del cloud.sandboxes[out[0].sandbox_id]
    return out[0], out[1]


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failed_listing_marks_nothing_lost(
    failure: str,
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    org_a: Organization,
) -> None:
    gone, fine = _two_running(new_session, cloud)
    cloud.fail_next("list_sandboxes", FAILURES[failure])
    summary = reconcile_org(org_a.pk)
    assert summary["lost"] == 0
    assert summary["errors"] == 1
    for session in (gone, fine):
        session.refresh_from_db()
        assert session.state == S.RUNNING
    # E2B answers again: the gone one is lost, the fine one untouched.
    assert reconcile_org(org_a.pk)["lost"] == 1
    gone.refresh_from_db()
    fine.refresh_from_db()
    assert (gone.state, fine.state) == (S.LOST, S.RUNNING)


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_missing_from_the_list_but_the_look_up_fails_marks_nothing_lost(
    failure: str,
    pool: CapacityPool,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    org_a: Organization,
) -> None:
    gone, _fine = _two_running(new_session, cloud)
    cloud.fail_next("status", FAILURES[failure])
    summary = reconcile_org(org_a.pk)
    assert summary["lost"] == 0
    assert summary["errors"] == 1
    gone.refresh_from_db()
    assert gone.state == S.RUNNING
    assert reconcile_org(org_a.pk)["lost"] == 1
