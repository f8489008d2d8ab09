"""The demo org has budgets, one near its threshold, shown on a fresh seed's dashboard."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone

from budgets.figures import org_figures
from budgets.models import Budget, Scope
from rensei.models import Organization
from tests.demo.conftest import seed
from tests.support import CsrfClient


def test_the_demo_has_budgets_one_near_its_threshold(demo_org: Organization) -> None:
    budgets = Budget.objects.filter(org=demo_org)
    assert {b.scope for b in budgets} == {Scope.ORG, Scope.POOL, Scope.ISSUE}
    figures = org_figures(demo_org.pk, timezone.now())
    own = [f for f in figures if f.budget.scope == Scope.ISSUE and f.budget.issue_id]
    # Near 80 %: the costliest issue's own budget is at 75 % when seeded.
    assert any(Decimal(74) <= f.percent < Decimal(80) for f in own), [f.percent for f in own]
    assert seed().count("Budgets: already set") == 1  # a second run leaves them alone
    assert Budget.objects.filter(org=demo_org).count() == budgets.count()


def test_the_demo_dashboard_shows_the_budgets_panel(demo_org: Organization, settings: Any) -> None:
    browser = CsrfClient()
    browser.post("/accounts/login/", {"username": "finance", "password": "demo-finance"})
    page = browser.get("/").content.decode()
    assert "dashboard-budgets-heading" in page and "actual vs budget vs forecast" in page
    assert "Budgets" in browser.get("/settings/budgets/").content.decode()
