"""The demo as a newcomer first sees it, in a real browser: log in with the printed logins,
read the explanation, and find data on every page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import AXE, browser, describe, login, page, shot  # noqa: F401
from tests.demo.conftest import LOCAL_EMULATOR, seed
from tests.sessions_engine.conftest import ensure_rate_cards

pytestmark = pytest.mark.browser

NOTE = "[role=note][aria-label='About this demo']"


def violations_in(page: Any, selector: str) -> list[Any]:  # noqa: F811
    """axe-core's serious and critical findings inside ``selector`` only."""
    # Evaluated, not added as an inline <script>: the pages' CSP refuses inline scripts.
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async (sel) => await axe.run(sel, {resultTypes: ['violations']})", selector
    )
    return [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]


@pytest.mark.django_db(transaction=True)
def test_a_newcomer_logs_in_and_finds_a_product_with_data(
    live_server: Any,
    page: Any,  # noqa: F811
    settings: Any,
) -> None:
    settings.DEBUG = True
    settings.E2B_API_URL = settings.E2B_SANDBOX_URL = LOCAL_EMULATOR
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ensure_rate_cards()
    seed()

    login(page, live_server.url, "admin", "demo-admin")
    note = page.get_by_role("note", name="About this demo")
    assert "local E2B emulator" in note.inner_text()
    assert note.get_by_role("link", name="Settings → Integrations").is_visible()
    assert violations_in(page, NOTE) == [], describe(violations_in(page, NOTE))
    assert "ENG-149" in page.get_by_role("main").inner_text()
    shot(page, "demo-dashboard-admin")

    for path, expected in (
        ("/settings/execution/capacity/", "demo-base"),
        ("/sessions/", "Terminated"),
        ("/analytics/cost-per-issue/", "Last 30 days"),
        ("/billing/ledger/", "ENG-"),
    ):
        page.goto(f"{live_server.url}{path}")
        assert expected in page.get_by_role("main").inner_text(), path

    page.get_by_role("button", name="Log out").click()
    login(page, live_server.url, "finance", "demo-finance")
    note = page.get_by_role("note", name="About this demo")
    assert note.get_by_role("link").count() == 0  # finance cannot open Integrations
    page.goto(f"{live_server.url}/analytics/cost-per-issue/")
    text = page.get_by_role("main").inner_text()
    assert "ENG-149" in text and "$" in text
    shot(page, "demo-cost-per-issue-finance")
