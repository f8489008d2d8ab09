"""The strict Content-Security-Policy holds on every page: no inline script or style runs or
is refused anywhere, and htmx still polls, swaps and confirms.

Every document gets an init script that records ``securitypolicyviolation`` events (the
browser fires one for each thing the policy refuses); after each page and each action the
list must be empty.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from billing.models import CostEvent
from rensei.models import ApiToken, Role
from sessions.models import Session, SessionState
from tests.browser.conftest import login, mark_page, same_page, shot
from tests.browser.data import cost_history
from tests.factories import CapacityPoolFactory, MembershipFactory
from tests.sessions_web.conftest import make_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
  [e.violatedDirective, e.blockedURI, e.sourceFile + ':' + e.lineNumber, e.sample].join(' | ')));
"""


def violations(page: Any) -> list[str]:
    return list(page.evaluate("window.__csp || []"))


def visit(page: Any, url: str, heading: str | re.Pattern[str]) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy, policy
    expect(page.get_by_role("heading", name=heading).first).to_be_visible()
    assert violations(page) == [], url


def test_every_page_and_the_admin_run_under_the_csp(live_server, page, org_a):  # type: ignore[no-untyped-def]
    history = cost_history(org_a)
    sam = get_user_model().objects.create_superuser("sam", "sam@example.com", "pw-sam")
    MembershipFactory.create(user=sam, org=org_a, role=Role.ADMIN)
    pool = CapacityPoolFactory.create(org=org_a, name="e2b-csp", order=5)
    live = make_session(org_a, SessionState.RUNNING, issue="ENG-77", pool=pool)
    event = CostEvent.objects.filter(org=org_a).order_by("pk").first()
    assert event is not None
    base = live_server.url
    page.context.add_init_script(RECORD)
    confirmed: list[str] = []

    def accept(dialog: Any) -> None:
        confirmed.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    login(page, base, "sam", "pw-sam")
    assert violations(page) == []

    # -- the product's pages ----------------------------------------------------------------
    for path, heading in (
        ("/", "Dashboard"),
        ("/sessions/", "Sessions"),
        ("/sessions/new/", "New session"),
        ("/settings/execution/capacity/", re.compile("Capacity")),
        (f"/settings/execution/capacity/{pool.pk}/", re.compile("e2b-csp")),
        ("/settings/execution/capacity/new/", re.compile("pool", re.I)),
        ("/settings/integrations/", "Integrations"),
        ("/settings/api-tokens/", "API tokens"),
        ("/analytics/cost-per-issue/", "Cost per Issue"),
        ("/billing/ledger/", re.compile("Ledger")),
        ("/settings/budgets/", "Budgets"),
    ):
        visit(page, base + path, heading)

    # -- a session page with the exec console; its status poll follows a change --------------
    visit(page, f"{base}/sessions/{live.pk}/", re.compile(rf"Session #{live.pk}"))
    expect(page.locator("#exec-console, [id^=exec]").first).to_be_attached()
    mark_page(page)
    Session.objects.filter(pk=live.pk).update(state=SessionState.PAUSED)
    expect(page.locator("#session-status .badge").first).to_have_text(re.compile("paused", re.I))
    assert same_page(page) and violations(page) == []
    shot(page, "csp-session-poll")

    # -- a form that htmx submits and swaps, then a confirm dialog ---------------------------
    visit(page, f"{base}/settings/api-tokens/", "API tokens")
    mark_page(page)
    page.get_by_label("Name").fill("csp check")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_text("Token “csp check” created.")).to_be_visible()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    shot(page, "csp-api-tokens")
    assert same_page(page) and violations(page) == []
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#tokens-panel").get_by_text("Revoked")).to_be_visible()
    assert confirmed and "Revoke" in confirmed[0]
    assert ApiToken.objects.get(name="csp check").revoked_at is not None
    expect(page.locator("#toasts .alert")).to_have_count(1)
    page.locator("#toasts .alert").get_by_role("button", name="Dismiss").click()
    expect(page.locator("#toasts .alert")).to_have_count(0)
    assert violations(page) == []

    # -- the Django admin: index, a changelist, a change form, the ledger reversal page ------
    visit(page, f"{base}/admin/", "Site administration")
    visit(page, f"{base}/admin/agent_sessions/session/", re.compile("Select session"))
    visit(
        page, f"{base}/admin/agent_sessions/session/{live.pk}/change/", re.compile("session", re.I)
    )
    visit(page, f"{base}/admin/pools/capacitypool/{pool.pk}/change/", re.compile("pool", re.I))
    visit(page, f"{base}/admin/billing/costevent/", re.compile("cost event", re.I))
    page.locator(f"input[name='_selected_action'][value='{event.pk}']").check()
    page.get_by_label("Action:").select_option(label="Reverse entry")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_role("heading", name="Reverse ledger entries")).to_be_visible()
    assert violations(page) == []

    # The recorder does see what the policy refuses (an inline style set from a script):
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_function("window.__csp.length > 0")
    assert "style-src" in violations(page)[0]
    del history
