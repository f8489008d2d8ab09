"""Caps hold through pause and resume, end to end: service API → real Celery worker → real
E2B SDK → local emulator, with a sampler watching the pool the whole time.

"Live" is ``SLOT_STATES`` (sessions.state): what the cap counts. The sampler also counts the
emulator's running sandboxes, E2B's own view of concurrency.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from pools.e2b_emulator.testing import RunningEmulator
from pools.models import CapacityPool
from rensei.models import Organization
from sessions import services
from sessions.dispatch import slots_in_use
from sessions.models import Session, SessionState
from sessions.queue import queue_status
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool
from tests.worker import emulator_with_worker

S = SessionState
CAP = 2
WAIT = 60  # seconds: a bound for polling, not a timing assertion
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def emu(django_db_setup: None, django_db_blocker: Any) -> Iterator[RunningEmulator]:
    with emulator_with_worker(django_db_blocker, api_key="e2b_cap_test_key") as (emulator, _):
        yield emulator


class Sampler:
    """Polls the pool's live sessions and the emulator's running sandboxes until stopped."""

    def __init__(self, pool: CapacityPool, emu: RunningEmulator) -> None:
        self.pool, self.emu = pool, emu
        self.live: list[int] = []
        self.running_boxes: list[int] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.live.append(slots_in_use([self.pool.pk]).get(self.pool.pk, 0))
                self.running_boxes.append(len(self.emu.emulator.sandbox_ids("running")))
                self._stop.wait(0.02)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connection.close()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT)


def wait_state(session: Session, *states: str) -> Session:
    def check() -> bool:
        session.refresh_from_db()
        return session.state in states

    try:
        wait_for(check, timeout=WAIT, interval=0.1)
    except AssertionError:
        raise AssertionError(
            f"session {session.pk} is {session.state} ({session.last_error!r}), expected {states}"
        ) from None
    return session


def test_cap_plus_two_sessions_through_pause_and_resume_never_exceed_the_cap(
    emu: RunningEmulator, org_a: Organization
) -> None:
    ensure_rate_cards()
    pool = make_pool(
        org_a, "capped", provider="e2b", concurrency_cap=CAP, config={"templateId": "donmai-worker"}
    )

    def create(key: str) -> Session:
        return services.create_session(
            org_a, issue_key=key, runtime_kinds=["npm"], requirement_kinds=["git"]
        )

    with Sampler(pool, emu) as sampler:
        a, b, c, d = (create(f"ENG-{n}") for n in range(1, CAP + 3))
        assert (c.state, d.state) == (S.QUEUED, S.QUEUED)
        wait_state(a, S.RUNNING)
        wait_state(b, S.RUNNING)

        # Pausing frees slots: the queued sessions take them.
        for session in (a, b):
            assert services.request_pause(session)
        for session in (a, b):
            wait_state(session, S.PAUSED)
        wait_state(c, S.RUNNING)
        wait_state(d, S.RUNNING)

        # The pool is full: both resumes wait, paused, and say why and where in line.
        assert services.request_resume(a)
        assert services.request_resume(b)
        a.refresh_from_db()
        b.refresh_from_db()
        assert (a.state, b.state) == (S.PAUSED, S.PAUSED)
        status_a, status_b = queue_status(a), queue_status(b)
        assert status_a is not None and status_b is not None
        assert status_a.text == "Resume requested: capped is at its cap (2/2); 1st in line"
        assert status_b.text == "Resume requested: capped is at its cap (2/2); 2nd in line"

        # A slot frees: the oldest waiting resume goes on by itself, the other still waits.
        assert services.request_terminate(c)
        wait_state(c, S.TERMINATED)
        wait_state(a, S.RUNNING)
        b.refresh_from_db()
        assert b.state == S.PAUSED and b.resume_requested_at is not None
        assert queue_status(b).text.endswith("1st in line")  # type: ignore[union-attr]

        # Another slot frees (a pause this time): the last one resumes.
        assert services.request_pause(d)
        wait_state(d, S.PAUSED)
        wait_state(b, S.RUNNING)
        assert queue_status(b) is None

        for session in (a, b, d):
            assert services.request_terminate(session)
        for session in (a, b, d):
            wait_state(session, S.TERMINATED)

    assert sampler.errors == []
    assert len(sampler.live) > 20, "the sampler barely ran"
    assert max(sampler.live) == CAP, sampler.live  # full at times, never past the cap
    assert max(sampler.running_boxes) <= CAP, sampler.running_boxes
