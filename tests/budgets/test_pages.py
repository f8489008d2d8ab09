"""Settings → Budgets: admins edit, finance reads, members and other orgs see nothing; bad
input is a 400 with the field's message and no row; every change is audited."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from budgets import sweep
from budgets.models import Budget, Enforcement, Scope
from rensei.models import AuditEvent, Organization
from sessions.models import Session
from tests.billing.helpers import make_pool
from tests.budgets.helpers import budget
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db
LIST = "/settings/budgets/"
GOOD = {"scope": "org", "amount_usd": "250.00", "thresholds": "50, 80, 100", "enforcement": "block"}


def test_admin_creates_edits_and_deletes_audited(
    org_a: Organization, alice: Any, client_as: Any
) -> None:
    client = client_as(alice)
    assert client.get(LIST).status_code == 200
    resp = client.post(LIST, GOOD)
    assert resp.status_code == 302
    b = Budget.objects.get(org=org_a)
    assert (b.scope, b.amount_usd, b.thresholds, b.enforcement) == (
        "org",
        Decimal("250.00"),
        [50, 80, 100],
        "block",
    )
    assert AuditEvent.objects.filter(org=org_a, action="budget.created", actor=alice).exists()
    detail = f"{LIST}{b.pk}/"
    page = client.get(detail).content.decode()
    assert "Consumption" in page and "Alerts fired" in page and "Actions taken" in page
    resp = client.post(detail, {**GOOD, "amount_usd": "300", "thresholds": "90"})
    assert resp.status_code == 302
    b.refresh_from_db()
    assert b.amount_usd == Decimal("300.00") and b.thresholds == [90]
    row = AuditEvent.objects.get(org=org_a, action="budget.changed")
    assert row.detail["before"]["amount_usd"] == "250.00"
    assert row.detail["after"]["amount_usd"] == "300.00"
    confirm = client.get(f"{detail}delete/")
    assert confirm.status_code == 200 and b"cannot be undone" in confirm.content
    assert client.post(f"{detail}delete/").status_code == 302
    assert not Budget.objects.filter(pk=b.pk).exists()
    assert AuditEvent.objects.filter(org=org_a, action="budget.deleted").exists()


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("amount_usd", "-5", "more than $0"),
        ("amount_usd", "0", "more than $0"),
        ("amount_usd", "0.00", "more than $0"),
        ("amount_usd", "1000000000.01", "at most $1,000,000,000"),
        ("amount_usd", "5000000000", "at most $1,000,000,000"),
        ("amount_usd", "ten", "number of US dollars"),
        ("amount_usd", "1.234", "2 decimal places"),
        ("amount_usd", "NaN", "plain number"),
        ("amount_usd", "1e3", "plain number"),
        ("thresholds", "0, 50", "between 1 % and 1000 %"),
        ("thresholds", "50, 1001", "between 1 % and 1000 %"),
        ("thresholds", "fifty", "whole percentage"),
        ("thresholds", "50.5", "whole percentage"),
        ("thresholds", "", "at least one threshold"),
        ("enforcement", "explode", "not one of the available choices"),
        ("scope", "galaxy", "not one of the available choices"),
    ],
)
def test_bad_input_is_a_400_with_the_fields_message(
    org_a: Organization, alice: Any, client_as: Any, field: str, value: str, said: str
) -> None:
    resp = client_as(alice).post(LIST, {**GOOD, field: value})
    assert resp.status_code == 400
    assert said in resp.content.decode()
    assert not Budget.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="budget.").exists()


def test_scope_targets_are_checked(
    org_a: Organization, org_b: Organization, alice: Any, client_as: Any
) -> None:
    client = client_as(alice)
    other_pool = make_pool(org_b, "theirs")
    resp = client.post(LIST, {**GOOD, "scope": "pool"})
    assert resp.status_code == 400 and "Choose the pool" in resp.content.decode()
    resp = client.post(LIST, {**GOOD, "scope": "pool", "pool": other_pool.pk})
    assert resp.status_code == 400 and "not one of this organisation" in resp.content.decode()
    resp = client.post(LIST, {**GOOD, "scope": "issue", "issue_key": "NOPE-1"})
    assert resp.status_code == 400 and "no issue NOPE-1" in resp.content.decode()
    IssueFactory.create(org=org_a, key="ENG-5")
    assert client.post(LIST, {**GOOD, "scope": "issue", "issue_key": "ENG-5"}).status_code == 302
    assert client.post(LIST, {**GOOD, "scope": "issue", "issue_key": "ENG-5"}).status_code == 400
    assert client.post(LIST, GOOD).status_code == 302
    resp = client.post(LIST, GOOD)
    assert resp.status_code == 400 and "already" in resp.content.decode()
    assert Budget.objects.filter(org=org_a).count() == 2


def test_finance_reads_but_cannot_change(org_a: Organization, fiona: Any, client_as: Any) -> None:
    b = budget(org_a, "100.00", enforcement=Enforcement.PAUSE)
    client = client_as(fiona)
    page = client.get(LIST).content.decode()
    assert "Organisation, monthly" in page and "New budget" not in page
    detail = client.get(f"{LIST}{b.pk}/").content.decode()
    assert "Change this budget" not in detail
    assert client.post(LIST, GOOD).status_code == 403
    assert client.post(f"{LIST}{b.pk}/", {**GOOD, "amount_usd": "1"}).status_code == 403
    assert client.post(f"{LIST}{b.pk}/release/").status_code == 403
    assert client.post(f"{LIST}{b.pk}/delete/").status_code == 403
    b.refresh_from_db()
    assert b.amount_usd == Decimal("100.00")


def test_members_have_no_budgets_pages(org_a: Organization, bob: Any, client_as: Any) -> None:
    b = budget(org_a, "100.00")
    client = client_as(bob)
    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}{b.pk}/").status_code == 403
    assert "/settings/budgets/" not in client.get("/").content.decode()


def test_another_orgs_budget_is_404_everywhere(
    org_a: Organization, org_b: Organization, charlie: Any, client_as: Any
) -> None:
    b = budget(org_a, "100.00", enforcement=Enforcement.BLOCK)
    client = client_as(charlie)
    for suffix in ("", "release/", "delete/"):
        assert client.get(f"{LIST}{b.pk}/{suffix}").status_code == 404
        assert client.post(f"{LIST}{b.pk}/{suffix}", GOOD).status_code == 404
    assert "Organisation, monthly" not in client.get(LIST).content.decode()
    b.refresh_from_db()
    assert b.amount_usd == Decimal("100.00")


def test_dashboard_panel_shows_the_last_pass(
    org_a: Organization, alice: Any, client_as: Any, spent: Session
) -> None:
    budget(org_a, "0.20", thresholds=[50])
    budget(org_a, "50", Scope.POOL, pool=spent.pool)
    sweep.evaluate_org(org_a.pk)
    page = client_as(alice).get("/").content.decode()
    assert "dashboard-budgets-heading" in page
    assert "actual vs budget vs forecast" in page  # the chart's title
    assert "<script" not in page.split("dashboard-budgets-heading")[1].split("</section>")[0]


def test_the_budget_form_is_styled_like_the_others(
    org_a: Organization, alice: Any, client_as: Any
) -> None:
    """Every field of the new-budget form carries Bootstrap's class, as the pool form's do:
    choices are selects, the rest text boxes, none left as a bare browser control."""
    page = client_as(alice).get(LIST).content.decode()
    form = page[page.index('<form method="post" action="/settings/budgets/"') :]
    form = form[: form.index("</form>")]
    for name in ("scope", "pool", "enforcement"):
        assert f'<select name="{name}" class="form-select"' in form, name
    for name in ("issue_key", "amount_usd", "thresholds"):
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', form)
        assert tag is not None and 'class="form-control"' in tag.group(0), name
