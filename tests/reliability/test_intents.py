"""The intent sweep's decisions, one claim at a time (sessions.intents).

Each case sets a session (or command run) in flight, its claim and the workers' heartbeats,
then sweeps "later": what must be sent again is sent once (a second sweep, or a second
sweeper, sends nothing), what a live worker holds or a finished job settled is left alone,
and a command a dead worker was running is ended, never run again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast
from unittest import mock

import pytest
from django.utils import timezone

from rensei.models import Lease, Organization
from sessions import intents
from sessions.models import CommandRun, CommandRunState, Session, SessionState
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db
S = SessionState
LIVE = "host:1:live"
DEAD = "host:2:dead"


def _worker(boot: str, alive: bool, now: datetime) -> None:
    ttl = intents.HEARTBEAT_TTL if alive else -intents.HEARTBEAT_TTL
    Lease.objects.create(name=f"worker:{boot}", holder=boot, expires_at=now + ttl)


def _sweep(
    now: datetime, depth: float = 0.0, trust: bool = True
) -> tuple[dict[str, int], list[tuple[str, Any]]]:
    sent: list[tuple[str, Any]] = []

    def record(name: str, args: tuple[Any, ...]) -> Any:
        sent.append((name, args))
        return mock.Mock()

    with (
        mock.patch("sessions.intents.queue_depth", return_value=depth),
        mock.patch("sessions.intents.app.signature", side_effect=record),
    ):
        return intents.sweep(now=now, trust_heartbeats=trust), sent


def _session(org: Organization, state: str, ago: timedelta) -> Session:
    session = cast(Session, SessionFactory(org=org, state=state, sandbox_id="sbx-1"))
    Session.objects.filter(pk=session.pk).update(state_changed_at=timezone.now() - ago)
    session.refresh_from_db()
    return session


def _claim(name: str, holder: str, at: datetime) -> None:
    Lease.objects.create(name=name, holder=holder, expires_at=at)


CASES = {
    # claim holder, claim age (s; None: no claim), queue depth → sent again?
    "held by a dead worker": (DEAD, 20, 3.0, True),
    "running in a dead worker": (DEAD + intents.RUNNING_MARK, 20, 3.0, True),
    "held by a live worker": (LIVE, 20, 0.0, False),
    "running in a live worker": (LIVE + intents.RUNNING_MARK, 20, 0.0, False),
    "never claimed, queue empty": (None, None, 0.0, True),
    "never claimed, queue busy (may be waiting there)": (None, None, 2.0, False),
    "never claimed, broker down": (None, None, float("nan"), False),
    "sent a moment ago": (intents.SENT, 2, 0.0, False),
    "sent long ago, never received, queue empty": (intents.SENT, 20, 0.0, True),
    "sent long ago, queue busy": (intents.SENT, 20, 5.0, False),
    "done since the state began (left to the reconciler)": (intents.DONE, 10, 0.0, False),
    "done before the state began (a previous action's)": (intents.DONE, 60, 0.0, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_session_job_is_sent_again_only_when_nobody_has_it(
    case: str, org_a: Organization
) -> None:
    holder, age, depth, resend = CASES[case]
    now = timezone.now()
    _worker(LIVE, True, now)
    _worker(DEAD, False, now)
    session = _session(org_a, S.PAUSING, timedelta(seconds=30))
    if holder is not None:
        assert age is not None
        name = f"intent:session:{session.pk}:sessions.tasks.pause_session"
        _claim(name, holder, now - timedelta(seconds=age))
    summary, sent = _sweep(now, depth)
    expected = [("sessions.tasks.pause_session", (session.pk,))] if resend else []
    assert sent == expected
    assert summary["resent"] == len(expected)
    assert _sweep(now, depth)[1] == []  # once: the claim is taken


def test_a_young_intent_is_left_to_its_first_job(org_a: Organization) -> None:
    now = timezone.now()
    _session(org_a, S.PROVISIONING, intents.GRACE / 2)
    assert _sweep(now)[1] == []


def test_a_command_running_on_a_dead_worker_is_ended_not_run_again(
    org_a: Organization,
) -> None:
    now = timezone.now()
    _worker(DEAD, False, now)
    session = _session(org_a, S.RUNNING, timedelta(minutes=1))
    run = CommandRun.objects.create(
        session=session, command="make deploy", state=CommandRunState.RUNNING, timeout_seconds=60
    )
    CommandRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(seconds=30))
    _claim(f"intent:run:{run.pk}", DEAD + intents.RUNNING_MARK, now - timedelta(seconds=20))
    summary, sent = _sweep(now)
    assert sent == []
    assert summary["commands_lost"] == 1
    run.refresh_from_db()
    assert run.state == CommandRunState.ERROR
    assert "outcome is unknown" in run.error


def test_a_queued_command_a_dead_worker_held_is_sent_again(org_a: Organization) -> None:
    now = timezone.now()
    _worker(DEAD, False, now)
    session = _session(org_a, S.RUNNING, timedelta(minutes=1))
    run = CommandRun.objects.create(
        session=session, command="echo hi", state=CommandRunState.QUEUED, timeout_seconds=60
    )
    CommandRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(seconds=30))
    _claim(f"intent:run:{run.pk}", DEAD, now - timedelta(seconds=20))
    assert _sweep(now)[1] == [("sessions.tasks.exec_command", (run.pk,))]


def test_claims_a_worker_no_longer_holds_are_handed_back(org_a: Organization) -> None:
    now = timezone.now()
    old = now - timedelta(seconds=10)
    _claim("intent:session:1", intents.BOOT, old)  # forgotten when the connection dropped
    _claim("intent:session:2", intents.BOOT + intents.RUNNING_MARK, old)  # settle failed
    _claim("intent:session:3", intents.BOOT, old)  # still reserved
    _claim("intent:session:4", intents.BOOT, now)  # just received
    _claim("intent:session:5", LIVE, old)  # another worker's
    assert intents.hand_back_unheld({"intent:session:3"}, now=now) == 2
    holders = dict(Lease.objects.values_list("name", "holder"))
    assert holders["intent:session:1"] == holders["intent:session:2"] == intents.SENT
    assert holders["intent:session:3"] == holders["intent:session:4"] == intents.BOOT
    assert holders["intent:session:5"] == LIVE


@pytest.mark.parametrize(
    ("holder", "age", "ended"),
    [
        (intents.SENT, 20, True),  # handed back (its pool child died), never received again
        (intents.SENT, 2, False),  # handed back a moment ago: its redelivery may be coming
        (LIVE + intents.RUNNING_MARK, 20, False),  # running in a live worker
    ],
)
def test_a_running_command_nobody_holds_is_ended(
    holder: str, age: int, ended: bool, org_a: Organization
) -> None:
    now = timezone.now()
    _worker(LIVE, True, now)
    session = _session(org_a, S.RUNNING, timedelta(minutes=1))
    run = CommandRun.objects.create(
        session=session, command="make deploy", state=CommandRunState.RUNNING, timeout_seconds=60
    )
    CommandRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(seconds=30))
    _claim(f"intent:run:{run.pk}", holder, now - timedelta(seconds=age))
    summary, sent = _sweep(now)
    assert sent == []
    run.refresh_from_db()
    assert (run.state == CommandRunState.ERROR) is ended
    assert summary["commands_lost"] == int(ended)


def test_another_jobs_claim_does_not_hide_a_lost_one(org_a: Organization) -> None:
    """A stale provision redelivered and run while the session is pausing settles its own
    claim, not the pause's: the lost pause is still sent again."""
    now = timezone.now()
    session = _session(org_a, S.PAUSING, timedelta(seconds=30))
    _claim(f"intent:session:{session.pk}:sessions.tasks.provision_session", intents.DONE, now)
    _claim(
        f"intent:session:{session.pk}:sessions.tasks.pause_session",
        DEAD,
        now - timedelta(seconds=20),
    )
    assert _sweep(now)[1] == [("sessions.tasks.pause_session", (session.pk,))]


def test_a_handed_back_claim_of_an_open_intent_survives_the_clean_up(
    org_a: Organization,
) -> None:
    """Seen in the 200-kill run: a claim handed back (dated long ago) was deleted by another
    worker's clean-up before a sweep decided on it, leaving a running command with no claim,
    which no sweep ends. A young command is not decided on yet, but its claim is kept."""
    now = timezone.now()
    session = _session(org_a, S.RUNNING, timedelta(minutes=1))
    run = CommandRun.objects.create(
        session=session, command="make deploy", state=CommandRunState.RUNNING, timeout_seconds=60
    )
    _claim(f"intent:run:{run.pk}", intents.SENT, intents.LONG_AGO)  # handed back just now
    _claim("intent:session:999999:sessions.tasks.pause_session", intents.SENT, intents.LONG_AGO)
    summary, sent = _sweep(now)
    assert summary["commands_lost"] == 0  # younger than GRACE: left to its job for now
    names = set(Lease.objects.values_list("name", flat=True))
    assert f"intent:run:{run.pk}" in names  # the open intent's claim is kept
    assert "intent:session:999999:sessions.tasks.pause_session" not in names  # a closed one goes
    summary, sent = _sweep(now + intents.GRACE + timedelta(seconds=1))
    assert summary["commands_lost"] == 1 and sent == []
    run.refresh_from_db()
    assert run.state == CommandRunState.ERROR


def test_right_after_an_outage_no_worker_is_judged_dead(org_a: Organization) -> None:
    """Seen in a PostgreSQL restart: nobody could renew a heartbeat while it was down, so
    the first sweep after it found every other worker "dead" and ended a command a live
    worker was running. Until heartbeats are trusted again, dead-worker verdicts wait."""
    now = timezone.now()
    _worker(DEAD, False, now)  # lapsed during the outage; it may be alive
    session = _session(org_a, S.PAUSING, timedelta(seconds=30))
    _claim(f"intent:session:{session.pk}:sessions.tasks.pause_session", DEAD, now)
    run = CommandRun.objects.create(
        session=session, command="make deploy", state=CommandRunState.RUNNING, timeout_seconds=60
    )
    CommandRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(seconds=30))
    _claim(f"intent:run:{run.pk}", DEAD + intents.RUNNING_MARK, now - timedelta(seconds=20))
    summary, sent = _sweep(now, trust=False)
    assert (summary, sent) == ({"resent": 0, "commands_lost": 0}, [])
    assert CommandRun.objects.get(pk=run.pk).state == CommandRunState.RUNNING
    # Trusted again and still silent: that worker is dead after all.
    summary, sent = _sweep(now)
    assert summary == {"resent": 1, "commands_lost": 1}


def test_heartbeats_are_trusted_again_a_ttl_after_a_gap_in_ours() -> None:
    beats, ttl = intents.Heartbeats(), intents.HEARTBEAT_TTL.total_seconds()
    step = intents.SWEEP_EVERY
    assert beats.beat(100.0) and beats.beat(100.0 + step)  # beating on time: trusted
    back = 100.0 + step + 10.0  # ten seconds without a heartbeat of ours
    assert not beats.beat(back)
    at = back
    while at + step < back + ttl:  # on time again, but not yet a TTL since the gap
        at += step
        assert not beats.beat(at)
    assert beats.beat(back + ttl)
