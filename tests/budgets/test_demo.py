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
    org_figure = next(
        f for f in org_figures(demo_org.pk, timezone.now()) if f.budget.scope == Scope.ORG
    )
    # Near 80 %: at 75 % when seeded (the live sessions push it over as they run).
    assert Decimal(70) <= org_figure.percent < Decimal(80) or org_figure.amount == Decimal(1)
    assert seed().count("Budgets: already set") == 1  # a second run leaves them alone
    assert Budget.objects.filter(org=demo_org).count() == budgets.count()


def test_the_demo_dashboard_shows_the_budgets_panel(demo_org: Organization, settings: Any) -> None:
    browser = CsrfClient()
    browser.post("/accounts/login/", {"username": "finance", "password": "demo-finance"})
    page = browser.get("/").content.decode()
    assert "dashboard-budgets-heading" in page and "actual vs budget vs forecast" in page
    assert "Budgets" in browser.get("/settings/budgets/").content.decode()
