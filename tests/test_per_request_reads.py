"""What every page pays before its own work: the user's memberships are read once, and the
budget banner asks a cheap EXISTS first, reading its alerts only when the org has some."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from budgets.alerts import BANNER_DAYS
from budgets.models import BudgetAlert, Scope
from rensei.models import Organization, Role
from tests.billing.helpers import make_issue
from tests.budgets.helpers import budget
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def page_queries(client: Any, url: str) -> tuple[str, list[str]]:
    client.get(url)  # warm: the login session
    with CaptureQueriesContext(connection) as ctx:
        resp = client.get(url)
    assert resp.status_code == 200
    return resp.content.decode(), [q["sql"] for q in ctx.captured_queries]


def reading(table: str, sqls: list[str]) -> list[str]:
    return [sql for sql in sqls if f'FROM "{table}"' in sql]


@pytest.mark.parametrize("url", ["/", "/sessions/", "/settings/budgets/"])
def test_the_memberships_are_read_once_per_page(
    client_as: Any, alice: Any, org_a: Organization, org_b: Organization, url: str
) -> None:
    MembershipFactory.create(user=alice, org=org_b, role=Role.FINANCE)  # for the switcher
    body, sqls = page_queries(client_as(alice), url)
    assert len(reading("rensei_membership", sqls)) == 1, sqls
    # The switcher still lists both orgs by name, the active one selected.
    assert f'<option value="{org_a.pk}" selected>Org A (Admin)</option>' in body
    assert f'<option value="{org_b.pk}">Org B (Finance)</option>' in body


def test_the_switched_org_is_the_active_one(
    client_as: Any, alice: Any, org_b: Organization
) -> None:
    MembershipFactory.create(user=alice, org=org_b, role=Role.FINANCE)
    client = client_as(alice)
    client.post("/org/switch/", {"org": org_b.pk, "next": "/"})
    body, sqls = page_queries(client, "/")
    assert len(reading("rensei_membership", sqls)) == 1
    assert f'<option value="{org_b.pk}" selected>Org B (Finance)</option>' in body


def test_without_recent_alerts_the_banner_costs_one_exists(
    client_as: Any, alice: Any, org_a: Organization
) -> None:
    old = budget(org_a, "10")
    BudgetAlert.objects.create(
        budget=old,
        period="2020-01",
        threshold=50,
        consumed_usd=Decimal("5"),
        amount_usd=Decimal("10"),
        at=timezone.now() - timedelta(days=BANNER_DAYS, minutes=1),
    )
    body, sqls = page_queries(client_as(alice), "/sessions/")
    alerts = reading("budgets_budgetalert", sqls)
    assert len(alerts) == 1, alerts
    assert alerts[0].startswith('SELECT 1 AS "a"') and "pools_capacitypool" not in alerts[0]
    assert "budget-banner" not in body


def test_recent_alerts_show_the_three_newest(
    client_as: Any, alice: Any, fiona: Any, bob: Any, org_a: Organization, org_b: Organization
) -> None:
    now = timezone.now()
    issue = make_issue(org_a, "ENG-7")
    org_budget = budget(org_a, "100")
    issue_default = budget(org_a, "20", Scope.ISSUE)
    other_org = budget(org_b, "5")
    for i, (b, threshold, alert_issue) in enumerate(
        [
            (org_budget, 50, None),
            (issue_default, 80, issue),
            (org_budget, 80, None),
            (issue_default, 100, issue),  # the oldest of four: not shown
            (other_org, 90, None),  # another org's: never shown
        ]
    ):
        BudgetAlert.objects.create(
            budget=b,
            period="2026-12",
            threshold=threshold,
            issue=alert_issue,
            consumed_usd=Decimal("16.5"),
            amount_usd=b.amount_usd,
            at=now - timedelta(hours=i if b != other_org else 0),
        )
    body, sqls = page_queries(client_as(alice), "/sessions/")
    assert len(reading("budgets_budgetalert", sqls)) == 2
    banner = body[
        body.index('id="budget-banner"') : body.index("</div>", body.index("budget-banner"))
    ]
    assert "Budget alerts:" in banner
    assert banner.count("<a href=") == 3
    assert banner.index("Organisation, monthly reached 50 %") < banner.index(
        "issue ENG-7 reached 80 %"
    )
    assert banner.index("issue ENG-7 reached 80 %") < banner.index(
        "Organisation, monthly reached 80 %"
    )
    assert "reached 100 %" not in banner and "reached 90 %" not in banner
    assert f'href="/settings/budgets/{org_budget.pk}/"' in banner
    assert "Budget alert" in client_as(fiona).get("/").content.decode()
    _, member_sqls = page_queries(client_as(bob), "/")
    assert not reading("budgets_budgetalert", member_sqls)  # members never see the banner
