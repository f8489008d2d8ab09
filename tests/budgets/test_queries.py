"""Evaluating budgets adds at most two queries to a provision (create + dispatch), and to the
dashboard two (the panel and the banner's check) or three with recent alerts (the banner
reads them), whatever the number of budgets and alerts."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from budgets import sweep
from budgets.models import BudgetAlert, Enforcement, Scope
from budgets.templatetags import budgets_banner
from pools.models import CapacityPool
from rensei.models import Organization
from sessions import admission, dashboard_panels, services
from sessions.models import Session
from tests.billing.helpers import make_issue, make_pool
from tests.budgets.helpers import budget

pytestmark = pytest.mark.django_db


def count(fn: Any) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def create(org: Organization, n: int) -> Session:
    return services.create_session(
        org, issue_key=f"ENG-{n}", runtime_kinds=[], requirement_kinds=[]
    )


def many_budgets(org: Organization, pool: CapacityPool) -> None:
    budget(org, "1000", enforcement=Enforcement.BLOCK)
    budget(org, "1000", Scope.POOL, pool=pool, enforcement=Enforcement.BLOCK)
    budget(org, "1000", Scope.ISSUE, enforcement=Enforcement.BLOCK)
    for i in range(5):
        budget(org, "1000", Scope.ISSUE, issue=make_issue(org, f"OWN-{i}"))


def test_provision_pays_at_most_two_queries(
    org_a: Organization, pool: CapacityPool, spent: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(org_a, 0)  # warm: the issue rows exist from here on
    hooks = admission._hooks
    monkeypatch.setattr(admission, "_hooks", None)
    without = count(lambda: create(org_a, 0))
    monkeypatch.setattr(admission, "_hooks", hooks)
    many_budgets(org_a, pool)
    sweep.evaluate_org(org_a.pk)
    with_budgets = count(lambda: create(org_a, 0))
    assert with_budgets - without <= 2, (without, with_budgets)


@pytest.mark.parametrize("alerting", [False, True])
def test_dashboard_pays_at_most_two_queries_three_with_alerts(
    org_a: Organization,
    pool: CapacityPool,
    spent: Session,
    alice: Any,
    client_as: Any,
    monkeypatch: pytest.MonkeyPatch,
    alerting: bool,
) -> None:
    client = client_as(alice)
    many_budgets(org_a, pool)
    if alerting:  # a cent on the issue that spent $0.1089 crosses every threshold
        budget(org_a, "0.01", Scope.ISSUE, issue=spent.issue, thresholds=[1, 2, 3])
    else:  # a cent on a pool that spent nothing
        budget(org_a, "0.01", Scope.POOL, pool=make_pool(org_a, "second"), thresholds=[1, 2, 3])
    sweep.evaluate_org(org_a.pk)
    assert BudgetAlert.objects.filter(budget__org=org_a).exists() == alerting
    client.get("/")  # warm: the login session
    with_budgets = count(lambda: client.get("/"))
    monkeypatch.setattr(dashboard_panels, "_panels", [])
    monkeypatch.setattr(budgets_banner, "banner", lambda request: {})
    without = count(lambda: client.get("/"))
    assert 0 < with_budgets - without <= (3 if alerting else 2), (without, with_budgets)
