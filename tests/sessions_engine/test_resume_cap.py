"""A resume takes a slot under the pool's soft cap, and waits in line when there is none.

Unit tests on the fake provider: the job bodies run when a test calls them (in a
non-transactional test ``delay_on_commit`` sends nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from pools.models import CapacityPool
from pools.providers.base import ProviderError
from pools.providers.fake import FakeCloud
from rensei.models import AuditEvent, Organization
from sessions import jobs, services
from sessions.dispatch import dispatch_org_waiting, slots_in_use
from sessions.models import Session, SessionState, SessionTransition
from sessions.queue import ordinal, queue_status
from sessions.state import SLOT_STATES
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool

S = SessionState
pytestmark = pytest.mark.django_db


def running(new_session: Callable[..., Session]) -> Session:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING, session.last_error
    return session


def paused(new_session: Callable[..., Session]) -> Session:
    session = running(new_session)
    assert services.request_pause(session)
    jobs.pause(session.pk)
    session.refresh_from_db()
    assert session.state == S.PAUSED
    return session


def fresh(session: Session) -> Session:
    session.refresh_from_db()
    return session


@pytest.fixture
def capped(org_a: Organization, cloud: FakeCloud, rate_cards: None) -> CapacityPool:
    return make_pool(org_a, "capped", concurrency_cap=1)


def test_live_means_holding_a_slot_and_paused_does_not() -> None:
    assert {S.PROVISIONING, S.RUNNING, S.PAUSING, S.RESUMING, S.TERMINATING} == SLOT_STATES
    assert S.PAUSED not in SLOT_STATES and S.QUEUED not in SLOT_STATES


def test_a_resume_at_the_cap_waits_paused_and_goes_on_when_a_slot_frees(
    capped: CapacityPool, new_session: Callable[..., Session], alice: Any
) -> None:
    sleeper = paused(new_session)
    holder = running(new_session)  # takes the only slot sleeper gave up
    assert slots_in_use([capped.pk]) == {capped.pk: 1}

    assert services.request_resume(sleeper, alice, "web")  # accepted…
    sleeper = fresh(sleeper)
    assert sleeper.state == S.PAUSED  # …but it waits: no second live session
    assert sleeper.resume_requested_at is not None
    assert slots_in_use([capped.pk]) == {capped.pk: 1}
    row = SessionTransition.objects.filter(session=sleeper).last()
    assert row is not None and (row.from_state, row.to_state) == (S.PAUSED, S.PAUSED)
    assert row.note == ("resume requested by alice; waiting for a slot: capped is at its cap (1/1)")
    event = AuditEvent.objects.filter(action="session.resume_requested").get()
    assert event.detail == {"waiting_for_slot": "capped"}
    status = queue_status(sleeper)
    assert status is not None
    assert status.text == "Resume requested: capped is at its cap (1/1); 1st in line"
    # The state still offers resume; asking again keeps its place in line.
    asked_at = sleeper.resume_requested_at
    assert services.request_resume(sleeper, alice, "web")
    assert fresh(sleeper).resume_requested_at == asked_at

    assert services.request_terminate(holder)
    jobs.terminate(holder.pk)  # frees the slot: the waiting resume takes it
    sleeper = fresh(sleeper)
    assert sleeper.state == S.RESUMING and sleeper.resume_requested_at is None
    assert queue_status(sleeper) is None
    jobs.resume(sleeper.pk)
    assert fresh(sleeper).state == S.RUNNING


def test_a_resume_with_a_free_slot_resumes_at_once(
    capped: CapacityPool, new_session: Callable[..., Session]
) -> None:
    sleeper = paused(new_session)
    assert services.request_resume(sleeper)
    sleeper = fresh(sleeper)
    assert sleeper.state == S.RESUMING and sleeper.resume_requested_at is None


def test_freed_slots_go_to_the_oldest_request_first(
    capped: CapacityPool, new_session: Callable[..., Session]
) -> None:
    sleeper = paused(new_session)
    holder = running(new_session)
    queued = new_session()  # asked first
    assert queued.state == S.QUEUED
    assert services.request_resume(sleeper)  # asked second
    assert queue_status(queued).position == 1  # type: ignore[union-attr]
    assert queue_status(fresh(sleeper)).position == 2  # type: ignore[union-attr]
    assert queue_status(fresh(sleeper)).line == "capped is at its cap (1/1); 2nd in line"  # type: ignore[union-attr]

    assert services.request_terminate(holder)
    jobs.terminate(holder.pk)
    queued, sleeper = fresh(queued), fresh(sleeper)
    assert (queued.state, sleeper.state) == (S.PROVISIONING, S.PAUSED)
    assert queue_status(sleeper).position == 1  # type: ignore[union-attr]

    jobs.provision(queued.pk)
    assert services.request_terminate(fresh(queued))
    jobs.terminate(queued.pk)
    assert fresh(sleeper).state == S.RESUMING


def test_a_resume_asked_before_a_new_session_goes_first(
    capped: CapacityPool, new_session: Callable[..., Session]
) -> None:
    sleeper = paused(new_session)
    holder = running(new_session)
    assert services.request_resume(sleeper)
    queued = new_session()
    assert queue_status(queued).position == 2  # type: ignore[union-attr]
    assert services.request_terminate(holder)
    jobs.terminate(holder.pk)
    assert (fresh(sleeper).state, fresh(queued).state) == (S.RESUMING, S.QUEUED)


def test_terminating_a_waiting_resume_leaves_the_line(
    capped: CapacityPool, new_session: Callable[..., Session]
) -> None:
    sleeper = paused(new_session)
    holder = running(new_session)
    assert services.request_resume(sleeper)
    assert services.request_terminate(fresh(sleeper))
    jobs.terminate(sleeper.pk)
    sleeper = fresh(sleeper)
    assert sleeper.state == S.TERMINATED and sleeper.resume_requested_at is None
    assert queue_status(sleeper) is None
    assert fresh(holder).state == S.RUNNING


def test_the_reconciler_starts_a_waiting_resume_once_a_slot_is_free(
    capped: CapacityPool, new_session: Callable[..., Session], org_a: Organization
) -> None:
    sleeper = paused(new_session)
    holder = running(new_session)
    assert services.request_resume(sleeper)
    # The slot frees without the usual hook (the cap is raised on the pool page).
    CapacityPool.objects.filter(pk=capped.pk).update(concurrency_cap=2)
    assert dispatch_org_waiting(org_a.pk) == 1
    assert fresh(sleeper).state == S.RESUMING
    assert fresh(holder).state == S.RUNNING


def test_a_failed_resume_gives_its_slot_to_the_next_in_line(
    capped: CapacityPool, cloud: FakeCloud, new_session: Callable[..., Session]
) -> None:
    sleeper = paused(new_session)
    assert services.request_resume(sleeper)
    queued = new_session()
    assert fresh(queued).state == S.QUEUED  # the resuming one holds the slot
    cloud.fail_next("resume", ProviderError("E2B said no (400).", permanent=True))
    jobs.resume(sleeper.pk)
    assert fresh(sleeper).state == S.PAUSED
    assert fresh(queued).state == S.PROVISIONING


def test_queue_status_is_none_for_sessions_that_do_not_wait(
    capped: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = running(new_session)
    assert queue_status(session) is None
    assert services.request_pause(session)
    jobs.pause(session.pk)
    assert queue_status(fresh(session)) is None  # paused, no resume asked


def test_queue_status_names_the_pool_and_the_place_in_bounded_queries(
    capped: CapacityPool,
    new_session: Callable[..., Session],
    django_assert_max_num_queries: Any,
) -> None:
    running(new_session)
    first, second, third = new_session(), new_session(), new_session()
    with django_assert_max_num_queries(3):
        status = queue_status(third)
    assert status is not None
    assert status.kind == "start" and status.waiting_for == ["capped"]
    assert status.text == "capped is at its cap (1/1); 3rd in line"
    assert status.as_json() == {
        "kind": "start",
        "reason": "capped is at its cap (1/1)",
        "position": 3,
        "waiting_for": ["capped"],
        "since": third.created_at,
        "text": "capped is at its cap (1/1); 3rd in line",
    }
    assert [queue_status(s).position for s in (first, second)] == [1, 2]  # type: ignore[union-attr]


def test_the_line_leaves_out_sessions_pinned_to_another_pool(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    make_pool(org_a, "one", order=1, concurrency_cap=0)
    make_pool(org_a, "two", order=2, concurrency_cap=0)
    pinned = new_session(pool_name="two")
    mine = new_session(pool_name="one")
    assert pinned.routing["waiting_for"] == ["two"]
    status = queue_status(mine)
    assert status is not None and status.text == "one is at its cap (0/0); 1st in line"


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
        "111th",
    ]


@pytest.mark.django_db(transaction=True)
def test_two_resumes_at_once_do_not_both_take_the_last_slot(
    org_a: Organization,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _race(org_a, new_session, monkeypatch)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_resumes_at_once_do_not_both_take_the_last_slot_on_postgres(
    require_postgres: None,
    org_a: Organization,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _race(org_a, new_session, monkeypatch)


def _race(
    org_a: Organization, new_session: Callable[..., Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight paused sessions, one free slot, every resume (and a new session) at once."""
    monkeypatch.setattr("sessions.enqueue.send", lambda name, *args: None)
    ensure_rate_cards()
    pool = make_pool(org_a, "capped", concurrency_cap=8)
    sleepers = [paused(new_session) for _ in range(8)]
    for _ in range(7):
        running(new_session)
    CapacityPool.objects.filter(pk=pool.pk).update(concurrency_cap=8)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(sleepers) + 1)

    def resume(session_id: int) -> None:
        try:
            barrier.wait()
            services.request_resume(Session.objects.get(pk=session_id))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def create() -> None:
        try:
            barrier.wait()
            new_session()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=resume, args=(s.pk,)) for s in sleepers]
    threads.append(threading.Thread(target=create))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert slots_in_use([pool.pk]) == {pool.pk: 8}
    in_line = Session.objects.filter(state=S.PAUSED, resume_requested_at__isnull=False).count()
    queued = Session.objects.filter(state=S.QUEUED).count()
    assert in_line + queued == 8  # the seven others wait, whoever won


def test_a_paused_session_on_its_way_out_holds_no_slot(
    capped: CapacityPool, new_session: Callable[..., Session]
) -> None:
    CapacityPool.objects.filter(pk=capped.pk).update(concurrency_cap=3)
    sleeper = paused(new_session)
    awake = running(new_session)
    assert services.request_terminate(fresh(sleeper))
    assert services.request_terminate(fresh(awake))
    assert (fresh(sleeper).state, fresh(awake).state) == (S.TERMINATING, S.TERMINATING)
    # The running one's sandbox runs until the terminate job kills it; the paused one's never
    # runs again.
    assert slots_in_use([capped.pk]) == {capped.pk: 1}


@pytest.mark.django_db(transaction=True)
def test_a_slot_freed_while_a_resume_got_in_line_is_offered_again(
    org_a: Organization,
    cloud: FakeCloud,
    new_session: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a job can free a slot and look for waiting requests before a resume's
    place in line is committed; the resume looks again once it is."""
    monkeypatch.setattr("sessions.enqueue.send", lambda name, *args: None)
    ensure_rate_cards()
    make_pool(org_a, "capped", concurrency_cap=1)
    sleeper = paused(new_session)
    holder = running(new_session)
    with transaction.atomic():
        assert services.request_resume(sleeper)
        assert fresh(sleeper).state == S.PAUSED
        # The other job's commit, whose own look for waiting requests came too early.
        Session.objects.filter(pk=holder.pk).update(state=S.TERMINATED)
    assert fresh(sleeper).state == S.RESUMING
