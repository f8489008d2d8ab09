"""The README's screenshots, taken from the demo org on the live stack.

`seed_demo` builds the demo org (the same command `make run` uses); the worker starts its
live sessions in the emulator. Each picture is checked for what it is meant to show before
it is taken. They always go to artifacts/screenshots/; with RENSEI_UPDATE_SCREENSHOTS=1 they
also replace the committed ones in docs/screenshots/:

    RENSEI_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser/test_screenshots.py
"""

from __future__ import annotations

import os
import shutil
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from playwright.sync_api import expect

from sessions.models import Session, SessionState
from tests.browser.conftest import JOB_TIMEOUT, login, shot
from tests.emulator.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = Path(settings.BASE_DIR) / "docs" / "screenshots"
UPDATE = os.environ.get("RENSEI_UPDATE_SCREENSHOTS") == "1"
PASSWORD = "pw-demo-screens"


def publish(page: Any, name: str, full_page: bool = False) -> Path:
    """Save the picture (1366 px wide); with RENSEI_UPDATE_SCREENSHOTS=1 also in docs/."""
    page.mouse.move(0, 0)  # no hover highlight on the last button clicked
    path = shot(page, f"readme-{name}", full_page=full_page)
    if UPDATE:
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / f"{name}.png")
    return path


def test_readme_screenshots(stack, page):  # type: ignore[no-untyped-def]
    call_command("seed_demo", force=True, password=PASSWORD, stdout=StringIO())
    # The demo's three live sessions start in the emulator (half of demo-e2b's cap).
    wait_for(
        lambda: Session.objects.filter(org__slug="demo", state=SessionState.RUNNING).count() >= 3,
        timeout=JOB_TIMEOUT / 1000,
    )
    base = stack["url"]
    login(page, base, "admin", PASSWORD)
    nav = page.get_by_role("navigation", name="Main")

    # Dashboard: live counts, cost, recent sessions.
    expect(page.get_by_role("link", name="Running").locator(".value")).not_to_have_text("0")
    expect(page.get_by_role("heading", name="Recent sessions")).to_be_visible()
    publish(page, "dashboard")

    # Settings → Integrations: the org's key, write-only.
    nav.get_by_role("link", name="Integrations").click()
    badge = page.locator("#card-e2b").get_by_test_id("credential-badge")
    # The demo's first checks tested the key once the emulator answered (billing.demo_checks).
    expect(badge).to_have_text("Connected", timeout=JOB_TIMEOUT)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result-e2b")).to_contain_text("Connection OK", timeout=JOB_TIMEOUT)
    expect(badge).to_have_text("Connected")
    publish(page, "integrations")

    # Execution → Capacity → New pool: the provider picker with E2B's capability profile.
    nav.get_by_role("link", name="Execution → Capacity").click()
    expect(page.get_by_role("link", name="demo-e2b")).to_be_visible()
    page.get_by_role("link", name="New pool").first.click()
    expect(page.get_by_test_id("capability-profile")).to_be_visible()
    publish(page, "capacity-new-pool")

    # A running session, after `which donmai` in its exec console.
    running = Session.objects.filter(org__slug="demo", state=SessionState.RUNNING).first()
    assert running is not None
    nav.get_by_role("link", name="Sessions").click()
    page.get_by_role("link", name=f"#{running.pk}", exact=True).click()
    page.get_by_label("Command").fill("which donmai && donmai --version")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#exec-output .exit-code")).to_have_text("0", timeout=JOB_TIMEOUT)
    expect(page.locator("#exec-output pre.output").first).to_contain_text("donmai")
    publish(page, "session-detail", full_page=True)

    # Cost per Issue: 30 days of the demo's ledger, with its charts.
    nav.get_by_role("link", name="Cost per Issue").click()
    expect(page.locator("#report svg.chart")).to_have_count(2)
    expect(page.locator("#report tbody tr").first).to_contain_text("$")
    publish(page, "cost-per-issue")

    # Settings → Budgets: the demo's budgets, the org's near its 80 % threshold.
    nav.get_by_role("link", name="Budgets").click()
    expect(page.locator("#budget-table tbody tr").first).to_contain_text("$")
    expect(page.get_by_role("heading", name="New budget")).to_be_visible()
    publish(page, "budgets", full_page=True)
