"""seed_demo: idempotent, through the product's own functions, and a demo worth looking at."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError
from django.db.models import Count, Sum
from django.utils import timezone

from billing.ledger import price, rate_card_for
from billing.models import CostEvent, DailyCost
from pools.models import CapacityPool
from rensei.credentials import resolve_credential
from rensei.demo import EMULATOR_KEY, ISSUES
from rensei.models import ApiToken, AuditEvent, Credential, Membership, Organization
from sessions.models import Issue, RunningInterval, Session, SessionTransition
from tests.demo.conftest import seed
from tests.support import CsrfClient

COUNTED = (
    Organization,
    Membership,
    Credential,
    ApiToken,
    CapacityPool,
    Issue,
    Session,
    SessionTransition,
    RunningInterval,
    CostEvent,
    DailyCost,
    AuditEvent,
)
TOKEN_RE = re.compile(r"rsn_[a-z0-9]{8}_[A-Za-z0-9_-]+")


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


def test_a_second_run_changes_no_counts(seeded: str) -> None:
    first = counts()
    assert all(first.values()), first  # every model has demo rows
    second_output = seed()
    assert counts() == first
    assert "already seeded" in second_output


def test_refuses_with_debug_off(db: None, settings: Any) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG off"):
        seed()
    assert not Organization.objects.filter(slug="demo").exists()


def test_the_printed_logins_work(seeded: str) -> None:
    assert "login: admin / demo-admin" in seeded
    assert "login: finance / demo-finance" in seeded
    browser = CsrfClient()
    browser.get("/accounts/login/")
    response = browser.post(
        "/accounts/login/", {"username": "admin", "password": "demo-admin"}, follow=True
    )
    page = response.content.decode()
    assert response.status_code == 200 and "Dashboard" in page
    assert "local E2B emulator" in page and "demo organisation" in page


def test_the_dispatcher_token_is_printed_once_and_stored_hashed(seeded: str, client: Any) -> None:
    printed = TOKEN_RE.findall(seeded)
    assert len(set(printed)) == 1, seeded
    token = printed[0]
    row = ApiToken.objects.get(org__slug="demo", name="demo dispatcher")
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(row.prefix) and row.prefix != token
    # Nothing else holds it: not the audit log, not the token row's other fields.
    for event in AuditEvent.objects.all():
        assert token not in str(event.detail) and token not in event.target
    response = client.get("/api/v1/sessions?limit=5", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and response.json()["results"]

    again = seed()
    assert not TOKEN_RE.findall(again)
    assert f"exists ({row.prefix}…)" in again
    assert "manage.py create_api_token --org demo" in again
    assert "demo_dispatcher --create-token" in again


def test_the_seed_builds_through_the_product(
    demo_org: Organization, demo_admin: Any, client_as: Any
) -> None:
    # The E2B key: the emulator's, added through the credential service (audited).
    resolved = resolve_credential(demo_org)
    assert resolved.source == "org" and resolved.secret == EMULATOR_KEY
    assert AuditEvent.objects.filter(org=demo_org, action="credential.added").count() == 1

    # Two pools from the pool form: a working one and a disabled one on E2B's bare template.
    main = CapacityPool.objects.get(org=demo_org, name="demo-e2b")
    assert main.config == {
        "templateId": "donmai-worker",
        "launchRunnerInline": True,
        "timeoutSeconds": 600,
        "onTimeout": "pause",
    }
    assert main.enabled and main.concurrency_cap == 6 and main.order == 0
    base = CapacityPool.objects.get(org=demo_org, name="demo-base")
    assert not base.enabled and base.config["templateId"] == "base"
    assert AuditEvent.objects.filter(org=demo_org, action="pool.created").count() == 2
    page = client_as(demo_admin).get(f"/settings/execution/capacity/{base.pk}/")
    assert "The base template has no donmai binary" in page.content.decode()

    # Sessions in every state; the live ones wait for the worker and take half of
    # demo-e2b's cap, so a newcomer's session does not queue behind the demo's own.
    by_state = dict(
        Session.objects.filter(org=demo_org).values_list("state").annotate(n=Count("id"))
    )
    assert by_state["terminated"] >= 40
    assert by_state["failed"] == 2 and by_state["lost"] == 1
    assert by_state["provisioning"] == 3 and "queued" not in by_state
    assert Issue.objects.filter(org=demo_org).count() == len(ISSUES)


def test_history_follows_the_ledger_rules(demo_org: Organization) -> None:
    now = timezone.now()
    intervals = RunningInterval.objects.filter(session__org=demo_org).select_related("session")
    assert not intervals.filter(ended_at__isnull=True).exists()
    events = {e.idempotency_key: e for e in CostEvent.objects.filter(org=demo_org)}
    assert len(events) == intervals.count()
    for interval in intervals:
        assert interval.ended_at is not None
        # The accrual's rule: no billed span crosses a UTC midnight.
        assert interval.started_at.date() == (interval.ended_at - timedelta(microseconds=1)).date()
        assert interval.ended_at <= now
        event = events[f"sandbox-seconds:session-{interval.session_id}:interval-{interval.pk}"]
        card = rate_card_for("e2b", interval.started_at)
        assert event.amount == price(event.quantity_seconds, 2, 1024, card)
    # Each timeline reads forward in time, and starts when the session was created.
    past = Session.objects.filter(org=demo_org, state__in=["terminated", "failed", "lost"])
    for session in past.prefetch_related("transitions"):
        times = [t.at for t in session.transitions.all()]
        assert times == sorted(times) and times[0] == session.created_at
    total = CostEvent.objects.filter(org=demo_org).aggregate(s=Sum("amount"))["s"]
    assert Decimal(20) < total < Decimal(100)


def test_admin_sees_a_product_with_data(
    demo_org: Organization, demo_admin: Any, client_as: Any
) -> None:
    admin = client_as(demo_admin)

    def page(url: str) -> str:
        response = admin.get(url)
        assert response.status_code == 200, url
        return str(response.content.decode())

    dashboard = page("/")
    assert "Recent sessions" in dashboard and "ENG-1" in dashboard
    assert "demo-e2b" in dashboard and "$" in dashboard
    assert "local E2B emulator" in dashboard

    capacity = page("/settings/execution/capacity/")
    assert "demo-e2b" in capacity and "demo-base" in capacity and "donmai-worker" in capacity

    sessions = page("/sessions/")
    for text in ("ENG-1", "Terminated", "Queued", "Provisioning"):
        assert text in sessions
    assert "Lost" in page("/sessions/?state=lost") and "Failed" in page("/sessions/?state=failed")

    cost = page("/analytics/cost-per-issue/")
    assert "ENG-149" in cost and "Last 30 days" in cost and "$" in cost

    ledger = page("/billing/ledger/")
    assert "ENG-149" in ledger and "$" in ledger


def test_finance_sees_thirty_days_of_skewed_cost(demo_finance: Any, client_as: Any) -> None:
    finance = client_as(demo_finance)
    response = finance.get("/analytics/cost-per-issue/")
    page = response.content.decode()
    assert response.status_code == 200 and "Last 30 days" in page
    report = response.context["report"]
    assert len(report.daily) == 30
    assert sum(1 for _, amount in report.daily if amount > 0) >= 25

    export = finance.get("/analytics/cost-per-issue/?format=csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    amounts = {row["issue_key"]: Decimal(row["amount"]) for row in rows}
    total = sum(amounts.values(), Decimal(0))
    top_key, top = max(amounts.items(), key=lambda item: item[1])
    assert top_key == "ENG-149" and top > total / 4, amounts
    assert top_key in page
    assert len([key for key in amounts if key]) == len(ISSUES)


def test_against_real_e2b_no_live_sessions_and_no_emulator_key(
    db: None, demo_settings: Any
) -> None:
    seed()
    org = Organization.objects.get(slug="demo")
    assert resolve_credential(org).secret == EMULATOR_KEY

    demo_settings.E2B_API_URL = demo_settings.E2B_SANDBOX_URL = ""
    output = seed()
    assert "removed the local emulator's key" in output
    assert not Credential.objects.filter(org=org).exists()
    assert "no key yet" in output


def test_a_first_run_against_real_e2b_starts_nothing(db: None, demo_settings: Any) -> None:
    demo_settings.E2B_API_URL = demo_settings.E2B_SANDBOX_URL = ""
    demo_settings.E2B_API_KEY = "e2b_real_key_from_env"
    output = seed()
    org = Organization.objects.get(slug="demo")
    assert not Credential.objects.filter(org=org).exists()  # E2B_API_KEY is used as is
    assert not Session.objects.filter(org=org, state__in=["queued", "provisioning"]).exists()
    assert "Live sessions: none started" in output
    assert Session.objects.filter(org=org, state="terminated").count() >= 40
