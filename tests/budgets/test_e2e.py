"""``pause`` and ``block`` end to end: a real Celery worker drives the local E2B emulator
through the real ``e2b`` SDK.

- A session over its issue's budget (the dispatcher's ``issue.budget_usd``) is paused before
  its projection breaches: the budget pass asks, the worker pauses the sandbox in E2B, the
  interval closes and is billed, the audit row says channel ``job``.
- A new session in a blocked scope is refused by the API with the documented 402 and the
  budget's state, while a session already running elsewhere is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from billing.models import CostEvent
from budgets import services as budget_services
from budgets import sweep
from budgets.models import ActionKind, BudgetAction, Enforcement, Scope
from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from rensei.models import AuditEvent, Organization
from rensei.tokens import create_token
from sessions import services
from sessions.models import RunningInterval, Session, SessionState
from tests.billing.helpers import make_issue, make_session, run
from tests.budgets.helpers import budget
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool
from tests.sessions_web.conftest import ApiClient
from tests.worker import WorkerProcess, loopback_no_proxy

S = SessionState
API_KEY = "e2b_budget_test_key"
WAIT = 90  # seconds: a bound for polling, not a timing assertion

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def emu(django_db_setup: None, django_db_blocker: Any) -> Iterator[RunningEmulator]:
    with loopback_no_proxy(), running_emulator(api_keys=[API_KEY]) as em:
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


def test_session_over_its_issue_budget_is_paused(emu: RunningEmulator, org_a: Organization) -> None:
    ensure_rate_cards()
    make_pool(org_a, "e2b-main", provider="e2b", config={"templateId": "donmai-worker"})
    session = services.create_session(
        org_a,
        issue_key="ENG-500",
        runtime_kinds=["npm"],
        requirement_kinds=["git"],
        issue_budget_usd=Decimal("0.05"),  # what a 1-hour timeout at its rate would pass
    )
    other = services.create_session(
        org_a, issue_key="ENG-501", runtime_kinds=["npm"], requirement_kinds=["git"]
    )
    wait_state(session, S.RUNNING)
    wait_state(other, S.RUNNING)
    figure = next(
        f for f in sweep.org_figures(org_a.pk, timezone.now()) if f.issue_key == "ENG-500"
    )
    assert figure.consumed < figure.amount <= figure.projection  # type: ignore[operator]

    done = sweep.evaluate_org(org_a.pk)
    assert done["paused"] == 1
    wait_state(session, S.PAUSED)
    assert emu.emulator.sandboxes[session.sandbox_id].state == "paused"
    assert state_of(other) == S.RUNNING  # another issue's session is left alone
    interval = RunningInterval.objects.get(session=session)
    assert interval.ended_at is not None
    assert CostEvent.objects.filter(session=session).count() == 1
    row = AuditEvent.objects.get(action="session.pause_requested", target__contains=f"{session.pk}")
    assert row.channel == "job"
    assert BudgetAction.objects.filter(kind=ActionKind.PAUSED, session=session).exists()
    assert sweep.evaluate_org(org_a.pk)["paused"] == 0  # paused: nothing to do twice
    for s in (session, other):
        assert services.request_terminate(s)
        wait_state(s, S.TERMINATED)


def test_new_session_in_a_blocked_scope_is_refused(
    emu: RunningEmulator, org_a: Organization
) -> None:
    ensure_rate_cards()
    pool = make_pool(org_a, "e2b-main", provider="e2b", config={"templateId": "donmai-worker"})
    # Spend this month: an hour of an earlier session ($0.1089 at 2 vCPU and 512 MiB).
    earlier = make_session(org_a, issue=make_issue(org_a, "ENG-400"), pool=pool)
    now = timezone.now()
    start = max(
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now - timedelta(hours=2)
    )
    run(earlier, start, start + (now - start) / 2)
    b = budget(org_a, "0.01", Scope.ORG, enforcement=Enforcement.BLOCK)
    assert sweep.evaluate_org(org_a.pk)["enforced"] == 1

    token = create_token(org_a, "dispatcher", None, "cli")[1]
    api = ApiClient(token)
    before = Session.objects.count()
    body = {"issue": {"key": "ENG-401"}, "runtime_kinds": ["npm"], "requirement_kinds": ["git"]}
    resp = api.post("/api/v1/sessions", body)
    assert resp.status_code == 402
    data = resp.json()
    assert data["budget"]["id"] == b.pk and data["budget"]["state"] == "enforced"
    assert "monthly budget is reached" in data["error"]
    assert Session.objects.count() == before
    # Raised by an admin: the same request now runs, in the emulator, through the worker.
    b.amount_usd = b.amount_usd * 1000
    budget_services.save_budget(
        org_a, {"amount_usd": b.amount_usd}, budget=b, actor=None, channel="web"
    )
    resp = api.post("/api/v1/sessions", body)
    assert resp.status_code == 202, resp.json()
    started = Session.objects.get(pk=resp.json()["id"])
    wait_state(started, S.RUNNING)
    assert services.request_terminate(started)
    wait_state(started, S.TERMINATED)
