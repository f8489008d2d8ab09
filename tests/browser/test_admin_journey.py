"""Alice, an org admin, from an empty org to a session she pauses, resumes and terminates.

Integrations (add the E2B key, test it) → Capacity (new E2B pool: the base-template warning,
then donmai-worker, a passing health check) → a session for ENG-1 that starts by itself →
`which donmai` in the exec console → pause, resume, terminate. Every change after a click is
awaited on the page the user is looking at: the page is marked before each step and must
still be the same document afterwards (htmx swapped it, nothing reloaded it).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from billing.models import CostEvent
from pools.models import CapacityPool
from sessions.models import Session
from tests.browser.conftest import JOB_TIMEOUT, login, mark_page, same_page, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def dismiss(page: Any, text: str | re.Pattern[str]) -> None:
    """Close the flash message, as a person does: it sits over the page's action buttons."""
    toast = page.locator("#toasts .alert", has_text=text)
    expect(toast).to_be_visible()
    toast.get_by_role("button", name="Dismiss").click()
    expect(toast).to_have_count(0)


def new_session(page: Any, key: str, title: str) -> Any:
    """Sessions → New session for an issue; on the session's page, the state badge."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sessions").click()
    page.get_by_role("link", name="New session").first.click()
    page.get_by_label("Issue key").fill(key)
    page.get_by_label("Issue title").fill(title)
    page.get_by_role("button", name="Create session").click()
    expect(page.get_by_role("heading", name=re.compile(rf"Session #\d+ {key}"))).to_be_visible()
    dismiss(page, re.compile(r"Session \d+ created"))
    return page.locator("#session-status .badge").first


def test_admin_sets_up_e2b_and_drives_a_session(stack, page, alice, org_a):  # type: ignore[no-untyped-def]
    base = stack["url"]
    confirmed: list[str] = []

    def accept(dialog: Any) -> None:
        confirmed.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    login(page, base, "alice", "pw-alice")
    nav = page.get_by_role("navigation", name="Main")

    # -- Settings → Integrations: the E2B key, then Test connection --------------------------
    nav.get_by_role("link", name="Integrations").click()
    card = page.locator("#card-e2b")
    page.get_by_label("E2B API key").fill("e2b_journey_key_7a1c")
    card.get_by_role("button", name="Add key").click()
    expect(card.get_by_test_id("credential-state")).to_contain_text(
        "Saved, not tested: key ending ••••7a1c"
    )
    mark_page(page)
    card.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result-e2b")).to_have_text(
        re.compile(r"Connection OK \(E2B answered in \d+ ms\)"), timeout=JOB_TIMEOUT
    )
    expect(card.get_by_test_id("credential-badge")).to_have_text("Connected")
    assert same_page(page)
    shot(page, "admin-1-integrations")

    # -- Capacity → New pool → E2B: base warns, donmai-worker does not ------------------------
    nav.get_by_role("link", name="Execution → Capacity").click()
    expect(page.get_by_text("No capacity pools yet.")).to_be_visible()
    page.get_by_role("link", name="New pool").first.click()
    expect(page.get_by_role("heading", name="Capability profile")).to_be_visible()
    page.get_by_role("link", name="Create E2B pool").click()
    page.get_by_label("Name").fill("journey-e2b")
    template = page.get_by_label("Template ID")
    template.fill("base")
    warning = page.get_by_test_id("base-warning")
    expect(warning).to_contain_text("The base template has no donmai binary.")
    page.get_by_role("button", name="Create pool").click()
    expect(page.get_by_role("heading", name="Pool journey-e2b")).to_be_visible()
    dismiss(page, "Pool journey-e2b created.")
    expect(page.get_by_test_id("base-warning")).to_be_visible()  # the pool page says so too
    shot(page, "admin-2-pool-base-warning")

    template = page.get_by_label("Template ID")
    template.fill("donmai-worker")
    expect(page.get_by_test_id("base-warning")).to_have_count(0)  # live hint, no reload
    page.get_by_role("button", name="Save pool").click()
    dismiss(page, "Pool journey-e2b saved.")
    expect(page.get_by_test_id("pool-config")).to_contain_text('"templateId": "donmai-worker"')
    assert CapacityPool.objects.get(name="journey-e2b").config["templateId"] == "donmai-worker"

    mark_page(page)
    page.get_by_role("button", name="Check pool").click()
    panel = page.locator("#check-panel")
    expect(panel.locator(".badge")).to_have_text("Passing", timeout=JOB_TIMEOUT)
    expect(panel.get_by_test_id("check-output")).to_contain_text("donmai")
    assert same_page(page)
    shot(page, "admin-3-pool-passing")

    # -- A session for ENG-1 starts by itself ---------------------------------------------------
    state = new_session(page, "ENG-1", "Journey issue")
    mark_page(page)
    expect(state).to_have_text("Running", timeout=JOB_TIMEOUT)
    assert same_page(page)
    session = Session.objects.get(issue__key="ENG-1")
    assert session.sandbox_id
    expect(page.locator("#session-status")).to_contain_text(session.sandbox_id)

    # -- Exec console: `which donmai` ------------------------------------------------------------
    page.get_by_label("Command").fill("which donmai")
    page.get_by_role("button", name="Run").click()
    output = page.locator("#exec-output")
    expect(output.locator(".exit-code")).to_have_text("0", timeout=JOB_TIMEOUT)
    expect(output.locator("pre.output").first).to_have_text(re.compile(r"/\S*/donmai\s*$"))
    # The "Past runs" list catches up by itself once the run ends.
    expect(page.locator("#exec-runs tbody tr").first).to_contain_text(
        "Exited 0", timeout=JOB_TIMEOUT
    )
    assert same_page(page)
    shot(page, "admin-4-session-exec")

    # -- Pause, resume, terminate (each confirm dialog is accepted) ------------------------------
    status = page.locator("#session-status")
    status.get_by_role("button", name="Pause").click()
    expect(state).to_have_text("Paused", timeout=JOB_TIMEOUT)
    status.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("Running", timeout=JOB_TIMEOUT)
    status.get_by_role("button", name="Terminate").click()
    expect(state).to_have_text("Terminated", timeout=JOB_TIMEOUT)
    assert same_page(page)
    expect(status.get_by_role("button", name="Pause")).to_have_count(0)
    assert [m.split(" session")[0] for m in confirmed] == ["Pause", "Resume", "Terminate"]
    shot(page, "admin-5-session-terminated")

    # Two running intervals, two ledger rows: what Cost per Issue will show for ENG-1.
    assert CostEvent.objects.filter(issue__key="ENG-1").count() == 2
