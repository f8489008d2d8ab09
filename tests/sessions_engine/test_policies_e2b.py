"""Idle auto-pause end to end: the policy pass reads metrics through the real SDK from the
local emulator (sampling every 0.2 s), and the pause runs in a real Celery worker.

The pass is called here with a short "minute" (``minute=``), so a 1-minute policy judges a
window of a few seconds; everything else (the factory, the request, the job, the interval,
the ledger, the savings) is what runs in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from billing.ledger import exact_seconds, price, rate_card_for
from billing.savings import policy_savings
from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from pools.providers import for_pool
from rensei.models import Organization
from sessions import policies, services
from sessions.models import PolicyAction, RunningInterval, Session, SessionState
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool
from tests.worker import WorkerProcess, loopback_no_proxy

S = SessionState
API_KEY = "e2b_policy_test_key"
WAIT = 90  # seconds: a bound for polling, not a timing assertion
MINUTE = timedelta(seconds=3)  # the policy's "minute" in this test

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def emu(django_db_setup: None, django_db_blocker: Any) -> Iterator[RunningEmulator]:
    with loopback_no_proxy(), running_emulator(api_keys=[API_KEY], metrics_interval_s=0.2) as em:
        urls = {"E2B_API_URL": em.url, "E2B_SANDBOX_URL": em.url}
        worker = WorkerProcess(env={**urls, "E2B_API_KEY": API_KEY})
        with override_settings(**urls, E2B_API_KEY=API_KEY):
            try:
                with django_db_blocker.unblock():
                    worker.start()
                yield em
            finally:
                worker.stop()


def state_of(session: Session) -> str:
    session.refresh_from_db()
    return session.state


def wait_state(session: Session, *states: str) -> None:
    wait_for(lambda: state_of(session) in states, timeout=WAIT, interval=0.2)


def start(org: Organization, command: str) -> Session:
    session = services.create_session(
        org, issue_key="ENG-7", runtime_kinds=["npm"], requirement_kinds=["git"]
    )
    wait_state(session, S.RUNNING)
    launched = services.run_command(session, command=f"nohup {command} >/dev/null 2>&1 &")

    def done() -> bool:
        launched.refresh_from_db()
        return launched.finished_at is not None

    wait_for(done, timeout=WAIT, interval=0.2)
    assert launched.exit_code == 0, launched.stderr
    return session


def test_sleeping_box_is_paused_busy_box_is_not_and_savings_are_exact(
    emu: RunningEmulator, org_a: Organization
) -> None:
    ensure_rate_cards()
    pool = make_pool(
        org_a,
        "thrifty",
        provider="e2b",
        config={"templateId": "donmai-worker", "idlePauseMinutes": 1, "idleCpuPercent": 2},
    )
    sleeper = start(org_a, "sleep 600")
    busy = start(org_a, "sh -c 'while :; do :; done'")

    # Beat passes until the sleeping box is judged idle (its window must fill with samples).
    def paused_by_policy() -> bool:
        policies.apply_policies(minute=MINUTE)
        return state_of(sleeper) in (S.PAUSING, S.PAUSED)

    wait_for(paused_by_policy, timeout=WAIT, interval=0.5)
    wait_state(sleeper, S.PAUSED)
    assert emu.emulator.sandboxes[sleeper.sandbox_id].state == "paused"
    # The busy box ran the same windows and more: it is still running.
    for _ in range(3):
        policies.apply_policies(minute=MINUTE)
    assert state_of(busy) == S.RUNNING
    now = timezone.now()
    samples = for_pool(pool).metrics(busy.sandbox_id, now - MINUTE, now)
    assert samples and max(s.cpu_pct for s in samples) >= 2  # judged busy, not unread
    assert list(PolicyAction.objects.values_list("session_id", flat=True)) == [sleeper.pk]
    note = sleeper.transitions.filter(to_state=S.PAUSING).get().note
    assert note.endswith("paused by the pool's idle policy: CPU under 2 % for 1 min")

    # The paused stretch ends at terminate; savings = paused seconds × the running rate.
    assert services.request_terminate(sleeper)
    wait_state(sleeper, S.TERMINATED)
    paused_at = RunningInterval.objects.get(session=sleeper).ended_at
    assert paused_at is not None and sleeper.ended_at is not None
    seconds = exact_seconds(sleeper.ended_at - paused_at)
    card = rate_card_for("e2b", paused_at)
    saved = policy_savings(org_a, now=sleeper.ended_at + timedelta(minutes=5))
    assert saved["seconds"] == seconds > 0
    assert saved["amount"] == price(seconds, sleeper.vcpu or 0, sleeper.memory_mb or 0, card)
    assert services.request_terminate(busy)
    wait_state(busy, S.TERMINATED)
