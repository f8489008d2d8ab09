"""Django admin: credentials by org without the secret, write-only key field through the
service, tokens read-mostly with a revoke action."""

from __future__ import annotations

from rensei.credentials import resolve_credential, set_credential
from rensei.models import AuditEvent, Channel, Credential
from rensei.tokens import authenticate, create_token

CRED = "/admin/rensei/credential/"
TOKENS = "/admin/rensei/apitoken/"


def test_credential_admin_lists_last_four_only(client_as, staff, alice, org_a):  # type: ignore[no-untyped-def]
    row = set_credential(org_a, "e2b", "e2b_admin_sees_4321", alice, Channel.WEB)
    c = client_as(staff)
    listing = c.get(CRED).content.decode()
    assert "Org A" in listing and "••••4321" in listing and "alice" in listing
    page = c.get(f"{CRED}{row.pk}/change/").content.decode()
    assert "••••4321" in page and 'name="new_secret"' in page
    assert "e2b_admin_sees_4321" not in listing + page
    assert row.secret_encrypted not in listing + page
    assert "secret_encrypted" not in page


def test_admin_sets_a_key_through_the_service(client_as, staff, org_a):  # type: ignore[no-untyped-def]
    c = client_as(staff)
    resp = c.post(f"{CRED}add/", {"org": org_a.pk, "provider": "e2b", "new_secret": "bad key"})
    assert resp.status_code == 200 and "must not contain spaces" in resp.content.decode()
    assert not Credential.objects.exists()
    resp = c.post(
        f"{CRED}add/", {"org": org_a.pk, "provider": "e2b", "new_secret": "e2b_from_admin_0001"}
    )
    assert resp.status_code == 302
    assert resolve_credential(org_a).secret == "e2b_from_admin_0001"
    row = Credential.objects.get()
    # Saving the change page with the field empty keeps the key; a new value replaces it.
    assert c.post(f"{CRED}{row.pk}/change/", {"new_secret": ""}).status_code == 302
    assert resolve_credential(org_a).secret == "e2b_from_admin_0001"
    c.post(f"{CRED}{row.pk}/change/", {"new_secret": "e2b_from_admin_0002"})
    assert resolve_credential(org_a).secret == "e2b_from_admin_0002"
    # Adding a second key for the same org and provider is refused.
    resp = c.post(
        f"{CRED}add/", {"org": org_a.pk, "provider": "e2b", "new_secret": "e2b_from_admin_0003"}
    )
    assert "already has a key" in resp.content.decode()
    c.post(f"{CRED}{row.pk}/delete/", {"post": "yes"})
    assert not Credential.objects.exists()
    events = list(AuditEvent.objects.order_by("id").values_list("action", "channel", "actor_label"))
    assert events == [
        ("credential.added", "admin", "sam"),
        ("credential.replaced", "admin", "sam"),
        ("credential.removed", "admin", "sam"),
    ]


def test_token_admin_hides_the_hash_and_revokes(client_as, staff, alice, org_a):  # type: ignore[no-untyped-def]
    token, plaintext = create_token(org_a, "dispatcher", alice, Channel.WEB)
    c = client_as(staff)
    page = c.get(f"{TOKENS}{token.pk}/change/").content.decode()
    assert token.token_hash not in page and plaintext not in page and token.prefix in page
    assert c.get(f"{TOKENS}add/").status_code == 403
    resp = c.post(TOKENS, {"action": "revoke_tokens", "_selected_action": [token.pk]})
    assert resp.status_code == 302
    assert authenticate(f"Bearer {plaintext}") is None
    event = AuditEvent.objects.get(action="token.revoked")
    assert event.channel == "admin" and event.actor_label == "sam"
    assert "dispatcher" in c.get(TOKENS).content.decode()  # still listed
