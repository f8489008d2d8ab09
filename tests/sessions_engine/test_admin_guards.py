"""Billing records cannot be lost: a session that ran, its running intervals and its
command runs are never deleted (admin, ORM, API); the admin terminates instead, billing the
open interval, and the ledger still equals the running time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import ProtectedError
from django.test import Client

from billing.models import CostEvent
from pools.models import CapacityPool
from rensei.models import AuditEvent, Channel, Organization
from rensei.tokens import SCOPES, create_token
from sessions import jobs, services
from sessions.models import CommandRun, RunningInterval, Session, SessionState
from sessions.retention import BillingRecordsKept
from tests.reliability.stack import ledger_problems

pytestmark = pytest.mark.django_db

ADMIN = "/admin/agent_sessions"


@pytest.fixture
def staff_client(client_as: Callable[[Any], Any]) -> Any:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    return client_as(user)


@pytest.fixture
def running(pool: CapacityPool, new_session: Callable[..., Session]) -> Session:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == SessionState.RUNNING
    services.run_command(session, command="echo hi", env={})
    assert session.intervals.filter(ended_at__isnull=True).count() == 1
    return session


def kept(session: Session) -> None:
    assert Session.objects.filter(pk=session.pk).exists()
    assert RunningInterval.objects.filter(session=session).count() == 1
    assert CommandRun.objects.filter(session=session).count() == 1


def test_admin_cannot_delete_a_session_that_ran(running: Session, staff_client: Any) -> None:
    page = staff_client.get(f"{ADMIN}/session/{running.pk}/delete/")
    assert page.status_code == 403
    assert (
        staff_client.post(f"{ADMIN}/session/{running.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    change = staff_client.get(f"{ADMIN}/session/{running.pk}/change/").content.decode()
    assert f"/session/{running.pk}/delete/" not in change
    # No bulk delete on the list: the action is not offered, and posting it does nothing.
    listing = staff_client.get(f"{ADMIN}/session/").content.decode()
    assert 'value="delete_selected"' not in listing
    staff_client.post(
        f"{ADMIN}/session/",
        {"action": "delete_selected", "_selected_action": [running.pk], "post": "yes"},
    )
    kept(running)


def test_admin_cannot_delete_intervals_or_command_runs(running: Session, staff_client: Any) -> None:
    interval = running.intervals.get()
    run = running.command_runs.get()
    for model, pk in (("runninginterval", interval.pk), ("commandrun", run.pk)):
        assert staff_client.get(f"{ADMIN}/{model}/{pk}/delete/").status_code == 403
        assert (
            staff_client.post(f"{ADMIN}/{model}/{pk}/delete/", {"post": "yes"}).status_code == 403
        )
        assert (
            'value="delete_selected"' not in staff_client.get(f"{ADMIN}/{model}/").content.decode()
        )
        staff_client.post(
            f"{ADMIN}/{model}/",
            {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
        )
    # Nor close an interval by hand (closing bills it; only the state machine does).
    staff_client.post(
        f"{ADMIN}/runninginterval/{interval.pk}/change/", {"ended_at_0": "2026-01-01"}
    )
    interval.refresh_from_db()
    assert interval.ended_at is None
    kept(running)


def test_a_session_that_never_ran_can_still_be_deleted(
    pool: CapacityPool, new_session: Callable[..., Session], staff_client: Any
) -> None:
    session = new_session()
    assert not session.intervals.exists()
    assert staff_client.get(f"{ADMIN}/session/{session.pk}/delete/").status_code == 200
    staff_client.post(f"{ADMIN}/session/{session.pk}/delete/", {"post": "yes"})
    assert not Session.objects.filter(pk=session.pk).exists()


def test_the_orm_refuses_every_delete_path(running: Session, org_a: Organization) -> None:
    interval = running.intervals.get()
    attempts: list[Callable[[], object]] = [
        running.delete,
        Session.objects.filter(pk=running.pk).delete,
        Session.objects.all().delete,
        interval.delete,
        RunningInterval.objects.all().delete,
    ]
    for attempt in attempts:
        with pytest.raises(BillingRecordsKept), transaction.atomic():
            attempt()
    kept(running)


def test_the_api_has_no_delete(running: Session, org_a: Organization) -> None:
    _, token = create_token(org_a, "dispatcher", None, Channel.CLI, scopes=SCOPES)
    response = Client().delete(
        f"/api/v1/sessions/{running.pk}", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 405
    kept(running)


def test_admin_terminate_bills_the_open_interval_and_is_audited(
    running: Session, staff_client: Any
) -> None:
    response = staff_client.post(
        f"{ADMIN}/session/", {"action": "terminate_sessions", "_selected_action": [running.pk]}
    )
    assert response.status_code == 302
    jobs.terminate(running.pk)
    running.refresh_from_db()
    assert running.state == SessionState.TERMINATED
    interval = running.intervals.get()
    assert interval.ended_at is not None
    event = CostEvent.objects.get(session=running)
    assert event.interval_end == interval.ended_at
    # The reliability canary's check: running seconds = billed seconds, nothing open.
    problems, figures = ledger_problems([running])
    assert problems == []
    assert figures["ledger seconds"] == figures["closed interval seconds"]
    assert AuditEvent.objects.filter(
        channel=Channel.ADMIN, target__contains=str(running.pk)
    ).exists()
    # Ended, it still keeps its records (its ledger rows protect it too).
    with pytest.raises(ProtectedError), transaction.atomic():
        running.delete()
