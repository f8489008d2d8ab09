"""Which events each change writes: session life, command runs, cost rows, pool health."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import transaction

from events.models import Event
from pools.models import CapacityPool, HealthStatus
from pools.providers.fake import FakeCloud
from pools.tasks import check_pool, start_check
from rensei.models import Organization
from sessions import jobs, services
from sessions.models import PolicyAction, Session
from sessions.outcomes import outcome_expression, outcome_of
from tests.sessions_engine.conftest import cloud, make_pool, new_session, pool, rate_cards

__all__ = ["cloud", "new_session", "pool", "rate_cards"]


def types_of(session: Session) -> list[str]:
    return list(
        Event.objects.filter(session_id=session.pk)
        .order_by("sequence")
        .values_list("type", flat=True)
    )


def test_a_sessions_life_in_events(pool: CapacityPool, new_session: Callable[..., Session]) -> None:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    services.request_pause(session)
    jobs.pause(session.pk)
    session.refresh_from_db()
    services.request_resume(session)
    jobs.resume(session.pk)
    session.refresh_from_db()
    run = services.run_command(session, command="echo hi", actor=None)
    jobs.exec_command(run.pk)
    services.request_terminate(session)
    jobs.terminate(session.pk)
    assert types_of(session) == [
        "session.created",
        "session.running",
        "session.paused",
        "sandbox.cost",  # the running interval the pause closed
        "session.resumed",
        "session.exec.finished",
        "session.ended",
        "sandbox.cost",
    ]
    events = {e.type: e for e in Event.objects.filter(session_id=session.pk)}
    assert [e.sequence for e in Event.objects.filter(session_id=session.pk)] == list(range(1, 9))
    assert events["session.created"].data["session"]["state"] == "queued"
    assert events["session.running"].data["session"]["state"] == "running"
    assert events["session.paused"].data["session"]["state"] == "paused"
    ended = events["session.ended"].data
    assert ended["outcome"] == "terminated" and ended["session"]["state"] == "terminated"
    assert ended["session"]["env_names"] == [] and ended["session"]["id"] == session.pk
    run_data = events["session.exec.finished"].data["run"]
    assert run_data["command"] == "echo hi" and run_data["state"] == "done"
    cost = events["sandbox.cost"].data
    assert cost["kind"] == "sandbox-cost" and cost["sessionId"] == str(session.pk)
    assert cost["inState"] == "running" and cost["issueKey"] == "ENG-142"
    assert set(cost) >= {
        "providerId", "wallClockMs", "vCpuSeconds", "memoryGbSeconds", "estimatedCents",
        "rateCard", "capturedAt", "idempotencyKey",
    }  # fmt: skip
    session.refresh_from_db()
    assert outcome_of(session) == "terminated"


def test_a_rolled_back_change_emits_nothing(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        new_session()
        raise RuntimeError("the request failed after creating")
    assert not Event.objects.exists()


def test_outcomes(pool: CapacityPool, new_session: Callable[..., Session]) -> None:
    cancelled = new_session(issue_key="ENG-1")
    services.request_terminate(cancelled)
    jobs.terminate(cancelled.pk)
    expired = new_session(issue_key="ENG-2")
    jobs.provision(expired.pk)
    expired.refresh_from_db()
    services.request_terminate(expired)
    PolicyAction.objects.create(
        session=expired, kind="max_age", action="terminate", reason="too old", at=expired.created_at
    )
    jobs.terminate(expired.pk)
    live = new_session(issue_key="ENG-3")
    for session in (cancelled, expired, live):
        session.refresh_from_db()
    assert [outcome_of(s) for s in (cancelled, expired, live)] == ["cancelled", "expired", None]
    annotated = dict(
        Session.objects.annotate(outcome=outcome_expression()).values_list("issue__key", "outcome")
    )
    assert annotated == {"ENG-1": "cancelled", "ENG-2": "expired", "ENG-3": None}
    ended = Event.objects.get(session_id=cancelled.pk, type="session.ended")
    assert ended.data["outcome"] == "cancelled"


def test_lost_while_running_or_paused(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    from sessions.lifecycle import mark_lost

    running = new_session(issue_key="ENG-4")
    paused = new_session(issue_key="ENG-5")
    for session in (running, paused):
        jobs.provision(session.pk)
        session.refresh_from_db()
    services.request_pause(paused)
    jobs.pause(paused.pk)
    paused.refresh_from_db()
    mark_lost(running, "gone")
    mark_lost(paused, "gone")
    outcomes = dict(
        Event.objects.filter(type="session.ended").values_list("session_id", "data__outcome")
    )
    assert outcomes == {running.pk: "lost", paused.pk: "interrupted"}
    for session in (running, paused):
        session.refresh_from_db()
    assert [outcome_of(running), outcome_of(paused)] == ["lost", "interrupted"]


def test_pool_health_changes_only_when_the_result_does(
    org_a: Organization, cloud: FakeCloud
) -> None:
    pool = make_pool(org_a, "fake-health")
    for _ in range(2):
        check_pool(start_check(pool).pk)
    events = list(Event.objects.filter(type="pool.health_changed"))
    assert len(events) == 1
    assert events[0].data["pool"]["name"] == "fake-health" and events[0].data["previous"] is None
    assert events[0].data["health"] in (HealthStatus.PASSING, HealthStatus.FAILING)
    assert events[0].session_id is None and events[0].org_id == org_a.pk


def test_a_reversal_writes_its_cost_event_too(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    from billing.ledger import reverse_cost_event
    from billing.models import CostEvent

    session = new_session()
    jobs.provision(session.pk)
    services.request_terminate(session)
    jobs.terminate(session.pk)
    row = CostEvent.objects.get(session=session)
    reversal = reverse_cost_event(row, reason="outage credit", actor=None)
    costs = [
        e.data
        for e in Event.objects.filter(session_id=session.pk, type="sandbox.cost").order_by(
            "sequence"
        )
    ]
    assert [c["costEventId"] for c in costs] == [row.pk, reversal.pk]  # one per ledger row
    assert costs[0]["reverses"] is None
    assert costs[1]["reverses"] == row.pk and costs[1]["reason"] == "outage credit"
    assert costs[1]["estimatedCents"] == str(-row.amount * 100)
    assert costs[1]["sessionId"] == str(session.pk) and costs[1]["issueKey"] == "ENG-142"
