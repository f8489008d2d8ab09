"""Alerts and enforcement on one org: thresholds fire once (banner, email, event), ``block``
refuses new sessions and holds queued ones with the reason, ``pause`` pauses running
sessions through the pause request (channel ``job``), the issue guard pauses before its
projection breaches, and an admin's raise or lift is audited and takes effect at once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from budgets import services, sweep
from budgets.models import ActionKind, BudgetAction, BudgetAlert, BudgetState, Enforcement, Scope
from events.models import Event
from pools.models import CapacityPool
from rensei.models import AuditEvent, Channel, Organization
from sessions import services as session_services
from sessions.dispatch import dispatch
from sessions.models import Session, SessionState
from sessions.queue import queue_status
from tests.budgets.helpers import budget

pytestmark = pytest.mark.django_db
S = SessionState


def test_crossing_thresholds_alerts_once_with_banner_email_and_event(
    org_a: Organization,
    spent: Session,
    alice,
    fiona,
    bob,
    client_as,  # type: ignore[no-untyped-def]
) -> None:
    alice.email, fiona.email, bob.email = "alice@example.com", "fiona@example.com", "bob@x.test"
    for user in (alice, fiona, bob):
        user.save()
    b = budget(org_a, "0.20", thresholds=[10, 50, 100, 900])
    done = sweep.evaluate_org(org_a.pk)
    assert done["alerts"] == 2  # 10 % and 50 % of $0.20 (spent ≈ $0.11)
    assert sorted(BudgetAlert.objects.filter(budget=b).values_list("threshold", flat=True)) == [
        10,
        50,
    ]
    assert sweep.evaluate_org(org_a.pk)["alerts"] == 0  # a second pass fires nothing
    assert Event.objects.filter(org=org_a, type="budget.threshold_crossed").count() == 2
    # Email once per alert, to admins and finance (not members), after commit.
    assert len(mail.outbox) == 0  # a test transaction never commits: nothing sent
    # Banner for admins and finance; none for a member.
    page = client_as(alice).get("/").content.decode()
    assert "Budget alert" in page and "reached 50 %" in page
    assert "Budget alert" in client_as(fiona).get("/sessions/").content.decode()
    assert "Budget alert" not in client_as(bob).get("/").content.decode()


def test_email_goes_to_admins_and_finance(
    org_a: Organization, spent: Session, alice, fiona, bob, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    alice.email, fiona.email, bob.email = "alice@example.com", "fiona@example.com", "bob@x.test"
    for user in (alice, fiona, bob):
        user.save()
    budget(org_a, "0.20", thresholds=[50])
    with django_capture_on_commit_callbacks(execute=True):
        sweep.evaluate_org(org_a.pk)
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == ["alice@example.com", "fiona@example.com"]
    assert "50 %" in mail.outbox[0].subject


def test_block_refuses_new_sessions_and_holds_queued_ones(
    org_a: Organization, pool: CapacityPool, spent: Session, alice
) -> None:  # type: ignore[no-untyped-def]
    queued = Session.objects.create(
        org=org_a, state=S.QUEUED, runtime_kinds=[], requirement_kinds=[]
    )
    b = budget(org_a, "0.05", enforcement=Enforcement.BLOCK)
    assert sweep.evaluate_org(org_a.pk)["enforced"] == 1
    assert Event.objects.filter(org=org_a, type="budget.enforced").count() == 1
    with pytest.raises(session_services.BudgetBlocked) as refused:
        session_services.create_session(
            org_a, issue_key="ENG-9", runtime_kinds=[], requirement_kinds=[]
        )
    assert "monthly budget is reached" in refused.value.message
    assert refused.value.block.budget["id"] == b.pk
    assert not Session.objects.filter(issue__key="ENG-9").exists()  # nothing half-saved
    refusal = BudgetAction.objects.get(budget=b, kind=ActionKind.REFUSED)
    assert "ENG-9" in refusal.note  # the budget's page lists what it refused
    # A session already queued waits with the reason (dispatch keeps it queued).
    dispatch(queued)
    queued.refresh_from_db()
    assert queued.state == S.QUEUED
    status = queue_status(queued)
    assert status is not None and "monthly budget is reached" in status.reason
    # The admin raises the budget: the block lifts at once and the change is audited.
    services.save_budget(
        org_a, {"amount_usd": Decimal("500.00")}, budget=b, actor=alice, channel=Channel.WEB
    )
    assert not BudgetState.objects.get(budget=b).enforcing
    assert AuditEvent.objects.filter(org=org_a, action="budget.changed", channel="web").exists()
    queued.refresh_from_db()
    assert queued.state != S.QUEUED  # dispatched when the block lifted
    made = session_services.create_session(
        org_a, issue_key="ENG-9", runtime_kinds=[], requirement_kinds=[]
    )
    assert made.pk


def test_pool_block_routes_around_and_pinned_requests_are_refused(
    org_a: Organization, pool: CapacityPool, spent: Session
) -> None:
    budget(org_a, "0.01", Scope.POOL, pool=pool, enforcement=Enforcement.BLOCK)
    sweep.evaluate_org(org_a.pk)
    with pytest.raises(session_services.BudgetBlocked) as refused:
        session_services.create_session(
            org_a, issue_key="ENG-3", runtime_kinds=[], requirement_kinds=[], pool_name="main"
        )
    assert "pool main" in refused.value.message
    waiting = session_services.create_session(
        org_a, issue_key="ENG-3", runtime_kinds=[], requirement_kinds=[]
    )
    assert waiting.state == S.QUEUED  # its only pool is blocked: it waits, with the reason
    status = queue_status(waiting)
    assert status is not None and "pool main is reached" in status.reason


def test_pause_budget_pauses_running_sessions_as_a_job(
    org_a: Organization, pool: CapacityPool, spent: Session
) -> None:
    b = budget(org_a, "0.01", Scope.POOL, pool=pool, enforcement=Enforcement.PAUSE)
    done = sweep.evaluate_org(org_a.pk)
    assert done["paused"] == 1
    spent.refresh_from_db()
    assert spent.state == S.PAUSING
    row = AuditEvent.objects.get(org=org_a, action="session.pause_requested")
    assert row.channel == "job" and "paused by its budget" in row.detail["reason"]
    assert BudgetAction.objects.filter(budget=b, kind=ActionKind.PAUSED, session=spent).exists()
    assert sweep.evaluate_org(org_a.pk)["paused"] == 0  # pausing already: nothing twice


def test_issue_guard_pauses_before_the_projection_breaches(
    org_a: Organization, pool: CapacityPool, spent: Session
) -> None:
    # Spent ≈ $0.11; the open sandbox's rate ($0.00003025/s) for the rest of its 1 h timeout
    # adds ≈ $0.11 more: a $0.15 budget is not reached but would be.
    b = budget(org_a, "0.15", Scope.ISSUE, issue=spent.issue, enforcement=Enforcement.PAUSE)
    figure = next(f for f in sweep.org_figures(org_a.pk, timezone.now()) if f.budget == b)
    assert figure.consumed < b.amount_usd <= figure.projection  # type: ignore[operator]
    assert sweep.evaluate_org(org_a.pk)["paused"] == 1
    spent.refresh_from_db()
    assert spent.state == S.PAUSING


def test_release_lifts_enforcement_resumes_and_is_audited(
    org_a: Organization, pool: CapacityPool, spent: Session, alice
) -> None:  # type: ignore[no-untyped-def]
    b = budget(org_a, "0.01", enforcement=Enforcement.PAUSE)
    sweep.evaluate_org(org_a.pk)
    Session.objects.filter(pk=spent.pk).update(state=S.PAUSED)  # as if the job had finished
    resumed = services.release(
        b, period=services.current_period(b), actor=alice, channel=Channel.WEB
    )
    assert resumed == 1
    spent.refresh_from_db()
    assert spent.state == S.RESUMING
    assert AuditEvent.objects.filter(action="budget.released", actor=alice).exists()
    assert sweep.evaluate_org(org_a.pk)["paused"] == 0  # lifted for the month: left alone
    assert BudgetState.objects.get(budget=b).released_at is not None


def test_the_new_session_page_says_why_it_is_blocked(
    org_a: Organization,
    pool: CapacityPool,
    spent: Session,
    alice: Any,
    client_as: Any,
) -> None:
    budget(org_a, "0.05", enforcement=Enforcement.BLOCK)
    sweep.evaluate_org(org_a.pk)
    before = Session.objects.count()
    resp = client_as(alice).post("/sessions/new/", {"issue_key": "ENG-8", "issue_title": ""})
    assert resp.status_code == 400
    assert "monthly budget is reached" in resp.content.decode()
    assert Session.objects.count() == before


def test_alerts_are_counted_on_the_metrics_page(
    org_a: Organization,
    spent: Session,
    client,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    from events.alerts import endpoint_disabled
    from events.models import WebhookEndpoint

    settings.RENSEI_METRICS_TOKEN = ""
    settings.DEBUG = True
    before = client.get("/metrics").content.decode()
    assert 'rensei_alerts_total{kind="budget_threshold"} 0.0' in before
    assert 'rensei_alerts_total{kind="webhook_disabled"} 0.0' in before
    budget(org_a, "0.20", thresholds=[10, 50, 100, 900])
    assert sweep.evaluate_org(org_a.pk)["alerts"] == 2
    assert sweep.evaluate_org(org_a.pk)["alerts"] == 0  # fired once: counted once
    endpoint = WebhookEndpoint.objects.create(org=org_a, url="https://hooks.example/in")
    endpoint_disabled(endpoint, "10 failures in a row")
    text = client.get("/metrics").content.decode()
    assert 'rensei_alerts_total{kind="budget_threshold"} 2.0' in text
    assert 'rensei_alerts_total{kind="webhook_disabled"} 1.0' in text
    assert 'rensei_alerts_total{kind="ledger_mismatch"} 0.0' in text
