"""Settings → Integrations tells the truth: a saved key is "Saved, not tested" until a Test
connection passes, the no-key message fits the page it is on, and audit rows written by API
calls name the token."""

from __future__ import annotations

import re

from django.test import Client

from pools.e2b_emulator.testing import running_emulator
from rensei.credentials import credential_status, set_credential
from rensei.models import AuditEvent, Channel, Credential
from rensei.tokens import create_token
from sessions.models import SessionState, SessionTransition
from tests.factories import SessionFactory

PAGE = "/settings/integrations/"
TEST_URL = "/settings/integrations/e2b/test/"


def _badge(html: str) -> str:
    match = re.search(r'data-testid="credential-badge">([^<]*)<', html)
    assert match, "no credential badge"
    return match.group(1)


def test_a_saved_key_is_not_connected_until_a_test_passes(  # type: ignore[no-untyped-def]
    client_as, alice, org_a, e2b_emulator, e2b_at
):
    e2b_at(e2b_emulator)
    set_credential(org_a, "e2b", "e2b_untested_key_1234", alice, Channel.WEB)
    client = client_as(alice)
    page = client.get(PAGE).content.decode()
    assert _badge(page) == "Saved, not tested"
    assert "Saved, not tested: key ending ••••1234" in page
    assert ">Connected<" not in page

    swapped = client.htmx("post", TEST_URL).content.decode()
    assert _badge(swapped) == "Connected"  # the card itself follows the result
    assert "; test passed " in swapped and "Connection OK" in swapped
    assert 'hx-swap-oob="true"' in swapped  # the activity list still refreshes
    row = Credential.objects.get(org=org_a)
    assert row.last_test_ok is True and row.last_tested_at is not None
    assert _badge(client.get(PAGE).content.decode()) == "Connected"

    # A new key is a new, untested key.
    set_credential(org_a, "e2b", "e2b_replacement_key_5678", alice, Channel.WEB)
    assert credential_status(org_a, "e2b").badge == "Saved, not tested"


def test_a_failed_test_says_so(client_as, alice, org_a, e2b_at):  # type: ignore[no-untyped-def]
    with running_emulator(api_keys={"e2b_the_only_good_key_0000"}) as emulator:
        e2b_at(emulator)
        set_credential(org_a, "e2b", "e2b_rejected_key_9999", alice, Channel.WEB)
        body = client_as(alice).htmx("post", TEST_URL).content.decode()
    assert _badge(body) == "Test failed"
    assert "Test failed: key ending ••••9999" in body and "E2B rejected this key (401)" in body
    assert Credential.objects.get(org=org_a).last_test_ok is False


def test_no_key_message_fits_the_integrations_page(client_as, alice):  # type: ignore[no-untyped-def]
    body = client_as(alice).htmx("post", TEST_URL).content.decode()
    assert "No E2B key to test yet: add one above, or set E2B_API_KEY on the server." in body
    assert "Settings → Integrations" not in body


def test_api_calls_are_audited_under_the_tokens_name(org_a) -> None:  # type: ignore[no-untyped-def]
    _, token = create_token(org_a, "ci-dispatcher", None, Channel.CLI)
    session = SessionFactory.create(
        org=org_a,
        state=SessionState.RUNNING,
        provider="e2b",
        runtime_kinds=["npm"],
        requirement_kinds=["git"],
        sandbox_id="sbx-1",
        template="donmai-worker",
    )
    response = Client().post(
        f"/api/v1/sessions/{session.pk}/pause", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 202, response.content
    event = AuditEvent.objects.get(action="session.pause_requested")
    assert event.actor_label == "API token ci-dispatcher"
    assert event.channel == Channel.API
    # The session's timeline says the same.
    note = SessionTransition.objects.get(session=session, to_state=SessionState.PAUSING).note
    assert note == "pause requested by API token ci-dispatcher"
    # Outside an API call nothing is labelled with a token.
    assert AuditEvent.objects.get(action="token.created").actor_label == "cli"
