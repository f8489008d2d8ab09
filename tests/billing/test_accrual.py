"""Daily accrual: a sandbox running for days is billed day by day, one row per UTC day."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import time_machine
from django.db.models import Sum

from billing.models import CostEvent, usage_day
from billing.tasks import daily_accrual
from rensei.celery import app
from sessions.intervals import close_open_interval, open_interval
from sessions.models import RunningInterval
from tests.billing.helpers import at, expected_amount, make_session, run

START = "2025-03-01 22:00"


def _rows(session):
    return list(CostEvent.objects.filter(session=session).order_by("interval_start"))


def _assert_three_days(session):
    rows = _rows(session)
    assert [r.quantity_seconds for r in rows] == [
        Decimal("7200.000"),  # Mar 1, 22:00 → 24:00
        Decimal("86400.000"),  # Mar 2, all day
        Decimal("5400.000"),  # Mar 3, 00:00 → 01:30
    ]
    assert [usage_day(r.occurred_at).isoformat() for r in rows] == [
        "2025-03-01",
        "2025-03-02",
        "2025-03-03",
    ]
    for row in rows:  # every row lies inside one UTC day
        assert usage_day(row.interval_start + timedelta(microseconds=1)) == row.usage_day
    total = sum((r.amount for r in rows), Decimal(0))
    assert total == expected_amount(7200 + 86400 + 5400, 2, 512)
    assert total == CostEvent.objects.filter(session=session).aggregate(s=Sum("amount"))["s"]


def test_beat_runs_the_registered_task():
    assert "billing.tasks.daily_accrual" in app.tasks


def test_running_across_two_midnights_makes_one_row_per_day(org_a):
    session = make_session(org_a, started_at=at(START))
    with time_machine.travel(at(START), tick=False) as clock:
        open_interval(session, at=at(START))
        clock.move_to(at("2025-03-02 00:00"))
        assert daily_accrual() == 1
        clock.move_to(at("2025-03-02 13:00"))  # nothing to split until the next midnight
        assert daily_accrual() == 0
        clock.move_to(at("2025-03-03 00:00"))
        assert daily_accrual() == 1
        clock.move_to(at("2025-03-03 01:30"))
        close_open_interval(session, at=at("2025-03-03 01:30"), reason="terminate")
    _assert_three_days(session)
    reasons = list(
        RunningInterval.objects.order_by("started_at").values_list("closed_reason", flat=True)
    )
    assert reasons == ["daily-accrual", "daily-accrual", "terminate"]


def test_a_late_run_catches_up_every_missed_midnight(org_a):
    session = make_session(org_a, started_at=at(START))
    with time_machine.travel(at(START), tick=False) as clock:
        open_interval(session, at=at(START))
        clock.move_to(at("2025-03-03 06:45"))  # beat was down for two midnights
        assert daily_accrual() == 2
        assert daily_accrual() == 0  # running it again changes nothing
        clock.move_to(at("2025-03-03 01:30") + timedelta(hours=6))
        close_open_interval(session, at=at("2025-03-03 01:30"), reason="terminate")
    _assert_three_days(session)


def test_twice_at_the_same_midnight_is_a_no_op(org_a):
    session = make_session(org_a, started_at=at(START))
    open_interval(session, at=at(START))
    with time_machine.travel(at("2025-03-02 00:00:05"), tick=False):
        assert daily_accrual() == 1
        assert daily_accrual() == 0
        assert daily_accrual("2025-03-02T00:00:00+00:00") == 0
    assert CostEvent.objects.count() == 1
    assert RunningInterval.objects.filter(ended_at__isnull=True).get().started_at == at(
        "2025-03-02 00:00"
    )


def test_boundary_argument_and_never_in_the_future(org_a):
    session = make_session(org_a, started_at=at(START))
    open_interval(session, at=at(START))
    with time_machine.travel(at("2025-03-05 10:00"), tick=False):
        # Only up to the given boundary…
        assert daily_accrual("2025-03-02T00:00:00Z") == 1
        # …and never past now, whatever is asked.
        assert daily_accrual("2030-01-01T00:00:00Z") == 3
    assert [r.usage_day.isoformat() for r in _rows(session)] == [
        "2025-03-01",
        "2025-03-02",
        "2025-03-03",
        "2025-03-04",
    ]


def test_paused_and_finished_sessions_are_left_alone(org_a):
    paused = make_session(org_a)
    run(paused, at("2025-03-01 10:00"), at("2025-03-01 11:00"))
    fresh = make_session(org_a)
    open_interval(fresh, at=at("2025-03-02 00:00"))  # started exactly at midnight
    with time_machine.travel(at("2025-03-02 00:00"), tick=False):
        assert daily_accrual() == 0
    assert CostEvent.objects.count() == 1


def test_one_broken_session_does_not_stop_the_others(org_a):
    broken = make_session(org_a, provider="nowhere")  # no rate card for this provider
    fine = make_session(org_a)
    open_interval(broken, at=at(START))
    open_interval(fine, at=at(START))
    with time_machine.travel(at("2025-03-02 00:00"), tick=False):
        assert daily_accrual() == 1
    assert CostEvent.objects.filter(session=fine).count() == 1
    # The broken one stays open (nothing half-billed) and is retried next time.
    assert RunningInterval.objects.get(session=broken).ended_at is None
