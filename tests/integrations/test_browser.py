"""Integrations and API tokens in a real browser: htmx swaps, confirm dialogs, accessibility."""

from __future__ import annotations

import re

import pytest

from rensei.credentials import resolve_credential
from rensei.models import ApiToken
from tests.browser.conftest import axe_violations, browser, login, page, shot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_manages_the_e2b_key(live_server, page, alice, org_a, e2b_emulator, e2b_at):  # type: ignore[no-untyped-def]  # noqa: F811
    e2b_at(e2b_emulator)
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, live_server.url, "alice", "pw-alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Integrations").click()
    card = page.locator("#card-e2b")
    assert card.get_by_text("Not configured", exact=True).first.is_visible()
    assert axe_violations(page) == []

    field = page.get_by_label("E2B API key")
    field.fill("e2b_has a space_0000")
    card.get_by_role("button", name="Add key").click()
    page.get_by_text("The key must not contain spaces or line breaks.").wait_for()
    assert page.get_by_label("E2B API key").input_value() == ""  # never echoed back

    page.get_by_label("E2B API key").fill("e2b_browser_entered_9f3c")
    page.locator("#card-e2b").get_by_role("button", name="Add key").click()
    page.get_by_text("Saved, not tested: key ending ••••9f3c, added by alice on").wait_for()
    assert resolve_credential(org_a).secret == "e2b_browser_entered_9f3c"
    assert "e2b_browser_entered_9f3c" not in page.content()

    page.get_by_role("button", name="Test connection").click()
    page.get_by_text(re.compile(r"Connection OK \(E2B answered in \d+ ms\)")).wait_for()
    page.locator("#audit-log").get_by_text("credential.tested").wait_for()  # out-of-band swap
    shot(page, "integrations-connected")

    page.get_by_role("button", name="Remove key").click()  # the confirm dialog is accepted
    page.get_by_text("E2B key removed.").wait_for()
    assert page.locator("#card-e2b").get_by_text("Not configured", exact=True).first.is_visible()


def test_admin_creates_and_revokes_a_token(live_server, page, alice, org_a):  # type: ignore[no-untyped-def]  # noqa: F811
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, live_server.url, "alice", "pw-alice")
    page.goto(f"{live_server.url}/settings/api-tokens/")
    page.get_by_label("Name").fill("dispatcher")
    page.get_by_role("button", name="Create token").click()
    shown = page.get_by_label("Your new token")
    shown.wait_for()
    plaintext = shown.input_value()
    assert plaintext.startswith("rsn_")
    violations = axe_violations(page)
    assert violations == [], [n["html"] for v in violations for n in v["nodes"]]
    shot(page, "api-token-created")

    page.reload()
    assert plaintext not in page.content()
    page.get_by_role("button", name="Revoke").click()
    page.get_by_text("revoked.").wait_for()
    assert page.get_by_text("Revoked", exact=True).is_visible()
    assert ApiToken.objects.get().revoked_at is not None
