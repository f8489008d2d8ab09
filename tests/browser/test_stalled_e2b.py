"""Test connection against a stalled E2B: the card says E2B did not answer within the web
bound, in place (htmx), and the key is marked as failing its test, instead of a late
"Connection OK". The emulator's latency is far longer than the test may run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from rensei.credentials import set_credential
from rensei.models import Channel
from tests.browser.conftest import login, mark_page, same_page, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stalled_e2b(settings) -> Iterator[RunningEmulator]:  # type: ignore[no-untyped-def]
    with running_emulator() as emu:
        settings.E2B_API_URL = settings.E2B_SANDBOX_URL = emu.url
        settings.RENSEI_WEB_PROVIDER_TIMEOUT = 1
        emu.emulator.set_latency(600_000, "list")
        yield emu


def test_test_connection_against_a_stalled_e2b(live_server, page, stalled_e2b, alice, org_a):  # type: ignore[no-untyped-def]
    set_credential(org_a, "e2b", "e2b_key_for_a_stalled_e2b", alice, Channel.WEB)
    login(page, live_server.url, "alice", "pw-alice")
    page.goto(f"{live_server.url}/settings/integrations/")
    card = page.locator("#card-e2b")
    mark_page(page)
    card.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result-e2b")).to_have_text("E2B did not answer within 1 s.")
    expect(card.get_by_test_id("credential-badge")).to_have_text("Test failed")
    assert same_page(page)
    shot(page, "integrations-stalled-e2b")
