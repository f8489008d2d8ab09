"""The shell in a real browser: login, navigation, accessibility of the basic pages."""

from __future__ import annotations

import pytest

from tests.browser.conftest import axe_violations, login, shot

pytestmark = pytest.mark.browser


@pytest.mark.django_db(transaction=True)
def test_login_and_navigation_are_accessible(live_server, page, alice, fiona):  # type: ignore[no-untyped-def]
    page.goto(f"{live_server.url}/accounts/login/")
    assert axe_violations(page) == []
    login(page, live_server.url, "fiona", "pw-fiona")
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Cost per Issue").is_visible()
    assert nav.get_by_role("link", name="Integrations").count() == 0
    assert axe_violations(page) == []
    shot(page, "shell-finance-dashboard")
