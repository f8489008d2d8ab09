"""Settings → Integrations: the E2B card in words, add / replace / remove, bad input."""

from __future__ import annotations

import pytest

from rensei.credentials import resolve_credential, set_credential
from rensei.models import AuditEvent, Channel, Credential

PAGE = "/settings/integrations/"
KEY_URL = "/settings/integrations/e2b/key/"
REMOVE_URL = "/settings/integrations/e2b/remove/"


def test_page_says_not_configured_and_offers_a_write_only_field(client_as, alice):  # type: ignore[no-untyped-def]
    html = client_as(alice).get(PAGE).content.decode()
    assert "E2B" in html and "Not configured" in html
    assert 'type="password"' in html and 'autocomplete="off"' in html
    assert '<label class="form-label" for="id_e2b_secret">E2B API key</label>' in html
    assert "Add key" in html and "Remove key" not in html
    assert "No activity yet." in html


def test_page_says_when_the_environment_key_is_used(client_as, alice, settings):  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = "e2b_environment_key_7777"
    html = client_as(alice).get(PAGE).content.decode()
    assert "Using E2B_API_KEY from the server environment" in html
    assert "e2b_environment_key_7777" not in html and "7777" not in html


def test_admin_adds_a_key_through_the_form(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    resp = c.post(KEY_URL, {"secret": "e2b_entered_in_form_a1b2"})
    assert resp.status_code == 302 and resp["Location"] == PAGE
    html = c.get(PAGE).content.decode()
    assert "Saved, not tested: key ending ••••a1b2, added by alice on " in html
    assert "E2B key ending ••••a1b2 saved." in html
    assert "Replace key" in html and "Remove key" in html
    assert "e2b_entered_in_form_a1b2" not in html
    assert 'value="' not in html.split('id="id_e2b_secret"')[0].rsplit("<input", 1)[1]
    assert resolve_credential(org_a).secret == "e2b_entered_in_form_a1b2"
    # The audit table shows the event: time UTC, actor, action, target, channel.
    assert "credential.added" in html and "E2B credential" in html and " UTC" in html


def test_htmx_add_and_replace_answer_a_client_redirect(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    resp = c.htmx("post", KEY_URL, {"secret": "e2b_first_key_1111"})
    assert resp.status_code == 200 and resp["HX-Redirect"] == PAGE
    resp = c.htmx("post", KEY_URL, {"secret": "e2b_second_key_2222"})
    assert resp["HX-Redirect"] == PAGE
    html = c.get(PAGE).content.decode()
    assert "Saved, not tested: key ending ••••2222, replaced by alice on " in html
    assert resolve_credential(org_a).secret == "e2b_second_key_2222"
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id")) == [
        "credential.added",
        "credential.replaced",
    ]


BAD_KEYS = [
    ("", "Enter the E2B API key."),
    ("e2b_with spaces_inside", "The key must not contain spaces or line breaks."),
    ("e2b_" + "k" * 400, "That is too long for an E2B API key"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_KEYS)
def test_bad_keys_get_form_errors_and_nothing_is_saved(client_as, alice, raw, message):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    plain = c.post(KEY_URL, {"secret": raw})
    assert plain.status_code == 400
    assert message in plain.content.decode()
    partial = c.htmx("post", KEY_URL, {"secret": raw})
    assert partial.status_code == 200
    body = partial.content.decode()
    assert message in body and 'id="card-e2b"' in body and "<html" not in body
    assert 'aria-invalid="true"' in body
    if raw:
        assert raw not in plain.content.decode() and raw not in body  # never echoed
    assert not Credential.objects.exists() and not AuditEvent.objects.exists()


def test_missing_field_and_unknown_provider(client_as, alice):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    assert c.post(KEY_URL, {}).status_code == 400
    assert c.post("/settings/integrations/nimbus/key/", {"secret": "x" * 20}).status_code == 404
    assert c.post("/settings/integrations/nimbus/test/").status_code == 404
    assert c.get(KEY_URL).status_code == 405
    assert not Credential.objects.exists()


def test_remove_asks_for_confirmation_then_removes(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    set_credential(org_a, "e2b", "e2b_to_be_removed_9876", alice, Channel.WEB)
    c = client_as(alice)
    html = c.get(PAGE).content.decode()
    assert 'hx-confirm="Remove the E2B key ending ••••9876?"' in html
    confirm = c.get(REMOVE_URL)
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "Remove the E2B key ending ••••9876?" in text and "Remove key" in text
    assert Credential.objects.exists()  # asking changes nothing
    resp = c.post(REMOVE_URL)
    assert resp.status_code == 302
    assert not Credential.objects.exists()
    html = c.get(PAGE).content.decode()
    assert "E2B key removed." in html and "Not configured" in html
    assert AuditEvent.objects.filter(action="credential.removed", channel="web").count() == 1


def test_remove_by_htmx_and_when_nothing_is_there(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    set_credential(org_a, "e2b", "e2b_to_be_removed_9876", alice, Channel.WEB)
    c = client_as(alice)
    assert c.htmx("post", REMOVE_URL)["HX-Redirect"] == PAGE
    assert not Credential.objects.exists()
    # A second remove (another tab) is a calm no-op, and the confirm page leads back.
    assert c.post(REMOVE_URL).status_code == 302
    assert c.get(REMOVE_URL)["Location"] == PAGE
    assert AuditEvent.objects.filter(action="credential.removed").count() == 1


def test_org_key_is_per_org(client_as, alice, charlie, org_a, org_b):  # type: ignore[no-untyped-def]
    set_credential(org_a, "e2b", "e2b_org_a_secret_aaaa", alice, Channel.WEB)
    html = client_as(charlie).get(PAGE).content.decode()
    assert "Not configured" in html and "aaaa" not in html
    # Charlie's remove acts on his own org only.
    client_as(charlie).post(REMOVE_URL)
    assert Credential.objects.filter(org=org_a).exists()
    # Org A's audit events are not listed for org B.
    assert "credential.added" not in html


def test_audit_list_shows_the_latest_twenty(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    from rensei import audit

    for i in range(25):
        audit.record(org=org_a, action=f"test.event{i:02d}", target="t", actor=alice)
    html = client_as(alice).get(PAGE).content.decode()
    assert "test.event24" in html and "test.event05" in html
    assert "test.event04" not in html
