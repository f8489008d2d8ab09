"""Sam, staff (a superuser who is also an admin of org A), corrects the ledger in the Django
admin: a ledger row cannot be edited, only reversed with a reason, and Cost per Issue then
shows the net."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from billing.models import CostEvent
from rensei.models import AuditEvent, Role
from tests.browser.conftest import login, shot
from tests.browser.data import cost_history
from tests.browser.test_finance_journey import cost_cell, money
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_reverses_a_ledger_row(live_server, page, org_a):  # type: ignore[no-untyped-def]
    history = cost_history(org_a)
    sam = get_user_model().objects.create_superuser("sam", "sam@example.com", "pw-sam")
    MembershipFactory.create(user=sam, org=org_a, role=Role.ADMIN)
    wrong = CostEvent.objects.get(session=history.sessions["eng1-recent"])
    kept = CostEvent.objects.get(session=history.sessions["eng1-old"])
    base = live_server.url
    login(page, base, "sam", "pw-sam")

    # -- Django admin → Cost events → the row: shown, not editable -------------------------------
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Django admin").click()
    page.get_by_role("link", name="Cost events").first.click()
    expect(page.get_by_role("link", name="Add cost event")).to_have_count(0)
    page.get_by_role("link", name=str(wrong.pk), exact=True).click()
    expect(page.get_by_role("heading", name="View cost event")).to_be_visible()
    form = page.locator("#content-main form")
    expect(form.locator("input:not([type=hidden]), select, textarea")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Save"))).to_have_count(0)
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)
    expect(form.locator(".readonly").filter(has_text=wrong.idempotency_key)).to_have_count(1)
    shot(page, "staff-1-ledger-row-read-only")

    # -- Reverse entry, with a reason --------------------------------------------------------------
    breadcrumbs = page.get_by_role("navigation", name="Breadcrumbs")
    breadcrumbs.get_by_role("link", name="Cost events").click()
    page.locator(f"input[name='_selected_action'][value='{wrong.pk}']").check()
    page.get_by_label("Action:").select_option(label="Reverse entry")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_role("heading", name="Reverse ledger entries")).to_be_visible()
    expect(page.get_by_text("Will be reversed")).to_have_count(1)
    page.get_by_label("Reason for the reversal").fill("Billed twice during the E2B outage")
    page.get_by_role("button", name="Reverse 1 entry").click()
    expect(page.get_by_text(f"Reversed 1 ledger entry: #{wrong.pk}")).to_be_visible()
    shot(page, "staff-2-reversed")

    reversal = CostEvent.objects.get(reverses=wrong)
    assert reversal.amount == -wrong.amount and reversal.actor == sam
    assert AuditEvent.objects.filter(action="ledger.reversed", actor=sam).count() == 1

    # -- Cost per Issue shows the net ----------------------------------------------------------
    page.get_by_role("link", name="View site").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cost per Issue").click()
    expect(cost_cell(page, "ENG-1")).to_have_text(money(kept.amount))
    assert money(kept.amount) != money(kept.amount + wrong.amount)
    shot(page, "staff-3-cost-per-issue-net")
