"""The reconciler's bounded queries, end to end: E2B's list through the real SDK, paged.

The same claim as ``test_reconcile_queries`` (which uses the fake provider), against the
emulator with the real ``Sandbox.list`` paginator: pages of 10, so N sandboxes are N/10
pages and 3N are three times as many. The database queries of a pass do not follow the
pages or the sandboxes, in step and with the same few decisions to make.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pools.e2b_emulator import isolation
from pools.providers import e2b as e2b_provider
from rensei.crypto import encrypt
from rensei.models import Credential, Organization
from sessions.models import RunningInterval, Session, SessionState
from sessions.reconcile import reconcile_org
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool

S = SessionState
pytestmark = pytest.mark.django_db
KEY = "e2b_reconcile_queries_key"
N = 20
PAGE = 10


@pytest.fixture
def e2b(e2b_settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    ensure_rate_cards()
    monkeypatch.setattr(e2b_provider, "LIST_PAGE_SIZE", PAGE)
    isolation.disable_for_tests()  # sandboxes as plain records: nothing runs in them here
    yield e2b_settings
    isolation.disable_for_tests(False)


def _sdk(emulator: Any) -> dict[str, Any]:
    return {"api_key": KEY, "api_url": emulator.url, "sandbox_url": emulator.url}


def _org(name: str, emulator: Any, count: int) -> tuple[Organization, list[Session]]:
    """An org with ``count`` running sessions, each with its interval and its sandbox in the
    emulator, tagged as a provision tags them."""
    from e2b import Sandbox

    org = Organization.objects.create(name=name, slug=name)
    pool = make_pool(org, "e2b-1", provider="e2b", order=1)
    Credential.objects.create(
        org=org, provider="e2b", secret_encrypted=encrypt(KEY), last_four=KEY[-4:]
    )
    earlier = timezone.now() - timedelta(minutes=5)
    sessions = []
    for _ in range(count):
        session = Session.objects.create(
            org=org, pool=pool, provider="e2b", state=S.RUNNING, vcpu=2, memory_mb=512
        )
        tags = {
            "rensei_org": org.slug,
            "rensei_session": str(session.pk),
            "rensei_request": str(session.request_id),
        }
        box = Sandbox.create(template="donmai-worker", metadata=tags, **_sdk(emulator))
        session.sandbox_id = box.sandbox_id
        sessions.append(session)
    Session.objects.bulk_update(sessions, ["sandbox_id"])
    Session.objects.filter(org=org).update(started_at=earlier, state_changed_at=earlier)
    RunningInterval.objects.bulk_create(
        RunningInterval(session=s, started_at=earlier) for s in sessions
    )
    return org, sessions


def _queries(org: Organization) -> tuple[int, dict[str, Any]]:
    with CaptureQueriesContext(connection) as ctx:
        summary = reconcile_org(org.pk)
    return len(ctx.captured_queries), summary


def _drift(org: Organization, emulator: Any, sessions: list[Session]) -> None:
    """One sandbox killed behind our back, one paused behind it, one orphan."""
    from e2b import Sandbox

    Sandbox.kill(sessions[0].sandbox_id, **_sdk(emulator))
    Sandbox.pause(sessions[1].sandbox_id, **_sdk(emulator))
    Sandbox.create(template="donmai-worker", metadata={"rensei_org": org.slug}, **_sdk(emulator))


def test_a_pass_over_3n_sandboxes_in_pages_costs_the_queries_of_one_over_n(e2b: Any) -> None:
    small, small_sessions = _org("org-small", e2b, N)
    large, large_sessions = _org("org-large", e2b, 3 * N)
    _queries(small)  # first passes: anything cached per process is cached now
    _queries(large)
    steady = (_queries(small), _queries(large))
    assert [summary["sandboxes_seen"] for _, summary in steady] == [N, 3 * N]
    for _, summary in steady:
        assert not {k: v for k, v in summary.items() if v and k != "sandboxes_seen"}
    assert steady[0][0] == steady[1][0]

    _drift(small, e2b, small_sessions)
    _drift(large, e2b, large_sessions)
    drift = (_queries(small), _queries(large))
    for (_, summary), sessions in zip(drift, (small_sessions, large_sessions), strict=True):
        assert (summary["lost"], summary["marked_paused"], summary["orphans_killed"]) == (1, 1, 1)
        states = dict(
            Session.objects.filter(pk__in=[s.pk for s in sessions[:3]]).values_list("pk", "state")
        )
        assert [states[s.pk] for s in sessions[:3]] == [S.LOST, S.PAUSED, S.RUNNING]
    assert drift[0][0] == drift[1][0]
