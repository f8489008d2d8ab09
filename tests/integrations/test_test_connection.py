"""Test connection: one authenticated E2B call through the provider layer, against the
emulator, with the result in words and an audit row that holds no secret."""

from __future__ import annotations

from pools.e2b_emulator.testing import running_emulator
from rensei.credentials import set_credential
from rensei.models import AuditEvent, Channel

TEST_URL = "/settings/integrations/e2b/test/"


def _keys_sent(emulator) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.request_headers.get("x-api-key", "") for r in emulator.emulator.call_log.snapshot()]


def test_accepted_key_reports_success(client_as, alice, org_a, e2b_emulator, e2b_at):  # type: ignore[no-untyped-def]
    e2b_at(e2b_emulator)
    set_credential(org_a, "e2b", "e2b_accepted_key_1234", alice, Channel.WEB)
    resp = client_as(alice).htmx("post", TEST_URL)
    assert resp.status_code == 200
    body = resp.content.decode()
    assert "Connection OK (E2B answered in " in body and " ms)" in body
    assert 'id="test-result-e2b"' in body and 'hx-swap-oob="true"' in body
    assert "e2b_accepted_key_1234" in _keys_sent(e2b_emulator)  # the org's key was used
    event = AuditEvent.objects.get(action="credential.tested")
    assert event.detail == {"provider": "e2b", "result": "ok", "source": "org"}
    assert "credential.tested" in body  # the refreshed activity list


def test_rejected_key_reports_401(client_as, alice, org_a, e2b_at):  # type: ignore[no-untyped-def]
    with running_emulator(api_keys={"e2b_the_only_good_key_0000"}) as emulator:
        e2b_at(emulator)
        set_credential(org_a, "e2b", "e2b_revoked_at_e2b_5678", alice, Channel.WEB)
        resp = client_as(alice).post(TEST_URL)  # without JS: the whole page
        assert resp.status_code == 200
        html = resp.content.decode()
        assert "E2B rejected this key (401)" in html
        assert "<html" in html and "Test failed: key ending ••••5678" in html
        assert "e2b_revoked_at_e2b_5678" in _keys_sent(emulator)
    event = AuditEvent.objects.get(action="credential.tested")
    assert event.detail["result"] == "failed"
    assert "e2b_revoked_at_e2b_5678" not in str(event.detail) + event.target


def test_environment_key_is_tested_when_the_org_has_none(  # type: ignore[no-untyped-def]
    client_as, alice, e2b_at, settings
):
    with running_emulator(api_keys={"e2b_server_env_key_4242"}) as emulator:
        e2b_at(emulator)
        settings.E2B_API_KEY = "e2b_server_env_key_4242"
        body = client_as(alice).htmx("post", TEST_URL).content.decode()
        assert "Connection OK (E2B answered in " in body
    assert AuditEvent.objects.get(action="credential.tested").detail["source"] == "environment"


def test_unreachable_e2b_shows_the_network_error(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    # The test settings point E2B at a closed loopback port.
    set_credential(org_a, "e2b", "e2b_some_valid_key_1234", alice, Channel.WEB)
    body = client_as(alice).htmx("post", TEST_URL).content.decode()
    assert "Could not reach E2B" in body
    assert "e2b_some_valid_key_1234" not in body


def test_no_credential_says_where_to_add_one(client_as, alice):  # type: ignore[no-untyped-def]
    body = client_as(alice).htmx("post", TEST_URL).content.decode()
    assert "No E2B key to test yet: add one above, or set E2B_API_KEY on the server." in body
    assert AuditEvent.objects.get(action="credential.tested").detail["result"] == "failed"


def test_key_encrypted_under_a_lost_key_is_a_message_not_a_500(  # type: ignore[no-untyped-def]
    client_as, alice, org_a, use_ring
):
    from tests.integrations.conftest import fresh_key

    set_credential(org_a, "e2b", "e2b_some_valid_key_1234", alice, Channel.WEB)
    use_ring(fresh_key())  # the key that encrypted it is gone
    resp = client_as(alice).htmx("post", TEST_URL)
    assert resp.status_code == 200
    assert "cannot be decrypted" in resp.content.decode()


def test_e2b_outage_is_reported_in_words(client_as, alice, org_a, e2b_emulator, e2b_at):  # type: ignore[no-untyped-def]
    e2b_at(e2b_emulator)
    e2b_emulator.emulator.faults.fail_next("list", status=500)
    set_credential(org_a, "e2b", "e2b_some_valid_key_1234", alice, Channel.WEB)
    body = client_as(alice).htmx("post", TEST_URL).content.decode()
    assert "500" in body and "Connection OK" not in body and "will retry" not in body
