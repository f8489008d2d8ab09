"""The JSON API's side of budgets: ``issue.budget_usd`` in the create body (validated like
every field, audited, nothing half-saved on bad input), the documented 402 with the budget's
state in a blocked scope, and ``cost_so_far`` on every session."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billing.live_cost import cost_so_far
from budgets import sweep
from budgets.models import Budget, Enforcement, Scope
from rensei.models import AuditEvent, Organization
from sessions.models import Issue, Session
from tests.budgets.helpers import budget
from tests.sessions_web.conftest import ApiClient

pytestmark = pytest.mark.django_db
URL = "/api/v1/sessions"


def body(**issue: Any) -> dict[str, Any]:
    return {
        "issue": {"key": "ENG-77", **issue},
        "runtime_kinds": [],
        "requirement_kinds": [],
    }


def test_budget_usd_sets_the_issues_budget_audited(org_a: Organization, api: ApiClient) -> None:
    resp = api.post(URL, body(budget_usd="12.50"))
    assert resp.status_code == 202, resp.json()
    b = Budget.objects.get(org=org_a, scope=Scope.ISSUE, issue__key="ENG-77")
    assert b.amount_usd == Decimal("12.50") and b.enforcement == Enforcement.PAUSE
    assert AuditEvent.objects.filter(org=org_a, action="budget.created", channel="api").exists()
    assert api.post(URL, body(budget_usd="20")).status_code == 202
    b.refresh_from_db()
    assert b.amount_usd == Decimal("20.00")
    assert AuditEvent.objects.filter(org=org_a, action="budget.changed", channel="api").exists()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("-1", "more than $0"),
        ("0", "more than $0"),
        ("1000000001", "at most $1,000,000,000"),
        ("1e12", "plain number"),
        ("lots", "number of US dollars"),
        ("3.141", "2 decimal places"),
        (12.5, "decimal string"),
        (True, "decimal string"),
        (None, None),
    ],
)
def test_bad_budget_usd_is_a_400_naming_it(
    org_a: Organization, api: ApiClient, value: Any, said: str | None
) -> None:
    resp = api.post(URL, body(budget_usd=value))
    if said is None:  # null: no budget, like leaving it out
        assert resp.status_code == 202
        assert not Budget.objects.exists()
        return
    assert resp.status_code == 400, resp.json()
    assert said in resp.json()["fields"]["issue.budget_usd"]
    assert not Budget.objects.exists()
    assert not Issue.objects.filter(key="ENG-77").exists()
    assert not Session.objects.exists()


def test_blocked_scope_is_a_402_with_the_budgets_state(
    org_a: Organization, api: ApiClient, spent: Session
) -> None:
    b = budget(org_a, "0.05", enforcement=Enforcement.BLOCK)
    sweep.evaluate_org(org_a.pk)
    before = Session.objects.count()
    resp = api.post(URL, body())
    assert resp.status_code == 402
    data = resp.json()
    assert "monthly budget is reached" in data["error"]
    assert data["fields"] == {"budget": data["error"]}
    assert data["budget"]["id"] == b.pk
    assert data["budget"]["state"] == "enforced"
    assert data["budget"]["amount_usd"] == "0.05"
    assert Session.objects.count() == before


def test_cost_so_far_is_the_exact_live_cost(
    org_a: Organization, api: ApiClient, spent: Session
) -> None:
    one = api.get(f"{URL}/{spent.pk}").json()
    listed = next(s for s in api.get(URL).json()["results"] if s["id"] == spent.pk)
    for seen in (one, listed):
        amount = Decimal(seen["cost_so_far"])
        # Later than the API's own reading: the open interval has run a little longer.
        fresh = Session.objects.select_related("pool").get(pk=spent.pk)
        later = cost_so_far([fresh], timezone.now())[spent.pk]
        assert Decimal("0.1") < amount <= later
