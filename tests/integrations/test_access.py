"""Only admins manage integrations and tokens; other orgs' token ids answer 404."""

from __future__ import annotations

import pytest

from rensei.credentials import set_credential
from rensei.models import ApiToken, AuditEvent, Channel, Credential
from rensei.tokens import authenticate, create_token


def _urls(token_id: int) -> list[str]:
    return [
        "/settings/integrations/",
        "/settings/integrations/e2b/key/",
        "/settings/integrations/e2b/remove/",
        "/settings/integrations/e2b/test/",
        "/settings/api-tokens/",
        "/settings/api-tokens/new/",
        f"/settings/api-tokens/{token_id}/revoke/",
    ]


@pytest.mark.parametrize("who", ["bob", "fiona"])
def test_member_and_finance_get_403_everywhere(client_as, people, org_a, who):  # type: ignore[no-untyped-def]
    alice = people["alice"]
    set_credential(org_a, "e2b", "e2b_org_a_key_1234", alice, Channel.WEB)
    token, plaintext = create_token(org_a, "dispatcher", alice, Channel.WEB)
    events_before = AuditEvent.objects.count()
    c = client_as(people[who])
    for url in _urls(token.pk):
        assert c.get(url).status_code == 403, f"GET {url}"
        data = {"secret": "e2b_replacement_key_9999", "name": "mine"}
        assert c.post(url, data).status_code == 403, f"POST {url}"
        assert c.htmx("post", url, data).status_code == 403, f"htmx POST {url}"
    assert Credential.objects.get(org=org_a).last_four == "1234"
    assert ApiToken.objects.count() == 1 and authenticate(f"Bearer {plaintext}") is not None
    assert AuditEvent.objects.count() == events_before


def test_outsider_admin_gets_404_on_foreign_token_ids(client_as, alice, charlie, org_a):  # type: ignore[no-untyped-def]
    token, plaintext = create_token(org_a, "org A robot", alice, Channel.WEB)
    c = client_as(charlie)
    url = f"/settings/api-tokens/{token.pk}/revoke/"
    assert c.get(url).status_code == 404
    assert c.post(url).status_code == 404
    assert c.htmx("post", url).status_code == 404
    assert authenticate(f"Bearer {plaintext}") is not None
    assert "org A robot" not in c.get("/settings/api-tokens/").content.decode()


def test_forged_posts_without_csrf_are_refused(client_as, alice):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    resp = c.post("/settings/integrations/e2b/key/", {"secret": "e2b_forged_key_1234"}, csrf=False)
    assert resp.status_code == 403
    assert c.post("/settings/api-tokens/new/", {"name": "x"}, csrf=False).status_code == 403
    assert not Credential.objects.exists() and not ApiToken.objects.exists()
