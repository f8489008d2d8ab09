"""The main pages with data on them: no serious or critical axe-core violations, and every
visible form field has an accessible name (its label, as the browser computes it)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from budgets import sweep
from budgets.models import Budget
from sessions.models import SessionState
from tests.browser.conftest import assert_fields_named, axe_violations, describe, login
from tests.browser.data import cost_history
from tests.factories import SessionFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_main_pages_are_accessible(live_server, page, alice, org_a):  # type: ignore[no-untyped-def]
    history = cost_history(org_a)
    live = SessionFactory.create(
        org=org_a,
        issue=history.sessions["eng1-recent"].issue,
        pool=history.main,
        provider="e2b",
        state=SessionState.RUNNING,
        sandbox_id="sbx-a11y",
        template="donmai-worker",
        vcpu=2,
        memory_mb=1024,
    )
    monthly = Budget.objects.create(org=org_a, scope="org", amount_usd=Decimal("0.50"))
    Budget.objects.create(org=org_a, scope="issue", amount_usd=Decimal("5.00"), enforcement="pause")
    sweep.evaluate_org(org_a.pk)  # figures for the dashboard panel, an alert for the banner
    base = live_server.url
    pages = {
        "login": "/accounts/login/",
        "dashboard": "/",
        "sessions list": "/sessions/",
        "session detail (running, exec console)": f"/sessions/{live.pk}/",
        "session detail (terminated, cost)": f"/sessions/{history.sessions['eng1-recent'].pk}/",
        "new session": "/sessions/new/",
        "integrations": "/settings/integrations/",
        "api tokens": "/settings/api-tokens/",
        "capacity list": "/settings/execution/capacity/",
        "new pool: provider picker": "/settings/execution/capacity/new/",
        "new pool: E2B form": "/settings/execution/capacity/new/e2b/",
        "pool detail": f"/settings/execution/capacity/{history.main.pk}/",
        "cost per issue": "/analytics/cost-per-issue/",
        "issue cost": "/analytics/issues/ENG-1/",
        "ledger": "/billing/ledger/",
        "budgets": "/settings/budgets/",
        "budget detail": f"/settings/budgets/{monthly.pk}/",
    }
    problems: dict[str, list[str]] = {}
    checked_fields = 0
    for name, path in pages.items():
        if name == "dashboard":
            login(page, base, "alice", "pw-alice")
        else:
            response = page.goto(base + path)
            assert response is not None and response.status == 200, name
        if found := describe(axe_violations(page)):
            problems[name] = found
        checked_fields += assert_fields_named(page)
    assert problems == {}
    assert checked_fields > 30  # the forms above were really there
