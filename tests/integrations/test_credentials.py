"""The credential service: add, replace, remove, audit, validation, and resolution order."""

from __future__ import annotations

import pytest

from rensei.credentials import (
    InvalidSecret,
    MissingCredential,
    credential_status,
    remove_credential,
    resolve_credential,
    set_credential,
)
from rensei.models import AuditEvent, Channel, Credential


def test_add_replace_remove_are_audited_without_the_secret(org_a, alice):  # type: ignore[no-untyped-def]
    row = set_credential(org_a, "e2b", "  e2b_first_key_1111  ", alice, Channel.WEB)
    assert row.last_four == "1111" and row.replaced_at is None
    assert resolve_credential(org_a).secret == "e2b_first_key_1111"  # whitespace stripped

    set_credential(org_a, "e2b", "e2b_second_key_2222", alice, Channel.ADMIN)
    assert Credential.objects.filter(org=org_a).count() == 1
    assert resolve_credential(org_a).secret == "e2b_second_key_2222"

    assert remove_credential(org_a, "e2b", alice, Channel.CLI) is True
    assert remove_credential(org_a, "e2b", alice, Channel.CLI) is False  # nothing left
    assert not Credential.objects.filter(org=org_a).exists()

    events = list(AuditEvent.objects.filter(org=org_a).order_by("id"))
    assert [(e.action, e.channel, e.actor_label) for e in events] == [
        ("credential.added", "web", "alice"),
        ("credential.replaced", "admin", "alice"),
        ("credential.removed", "cli", "alice"),
    ]
    assert events[0].detail == {"provider": "e2b", "last_four": "1111"}
    dumped = repr([(e.target, e.detail) for e in events])
    assert "first_key" not in dumped and "second_key" not in dumped


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "Enter the E2B API key."),
        ("   ", "Enter the E2B API key."),
        ("e2b_has space_1234", "must not contain spaces"),
        ("e2b_has\nnewline_1234", "must not contain spaces"),
        ("e2b_" + "x" * 300, "too long"),
        ("e2b_x1", "too short"),
        ("e2b_ünïcode_1234", "printable ASCII"),
    ],
)
def test_unusable_keys_are_refused_and_nothing_is_saved(org_a, alice, raw, message):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSecret, match=message) as caught:
        set_credential(org_a, "e2b", raw, alice, Channel.WEB)
    if raw.strip():
        assert raw.strip() not in str(caught.value)
    assert not Credential.objects.exists()
    assert not AuditEvent.objects.exists()


def test_unknown_provider_is_refused(org_a, alice):  # type: ignore[no-untyped-def]
    with pytest.raises(LookupError):
        set_credential(org_a, "nimbus", "e2b_valid_key_1234", alice, Channel.WEB)
    assert not Credential.objects.exists()


def test_org_credential_wins_over_the_environment(org_a, alice, settings):  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = "e2b_from_environment_9999"
    set_credential(org_a, "e2b", "e2b_org_key_1234", alice, Channel.WEB)
    resolved = resolve_credential(org_a, "e2b")
    assert (resolved.secret, resolved.source, resolved.last_four) == (
        "e2b_org_key_1234",
        "org",
        "1234",
    )
    assert "e2b_org_key_1234" not in repr(resolved)


def test_environment_serves_when_the_org_has_none(org_a, org_b, alice, settings):  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = "e2b_from_environment_9999"
    set_credential(org_a, "e2b", "e2b_org_key_1234", alice, Channel.WEB)
    resolved = resolve_credential(org_b, "e2b")
    assert (resolved.secret, resolved.source) == ("e2b_from_environment_9999", "environment")
    assert credential_status(org_b, "e2b").sentence() == (
        "Using E2B_API_KEY from the server environment"
    )


def test_neither_gives_the_clear_error(org_a):  # type: ignore[no-untyped-def]
    with pytest.raises(MissingCredential) as caught:
        resolve_credential(org_a, "e2b")
    assert "No E2B credential: add one in Settings → Integrations" in str(caught.value)
    assert credential_status(org_a, "e2b").sentence() == "Not configured"


def test_status_sentence_says_who_added_and_replaced(org_a, alice, time_machine):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    time_machine.move_to("2026-11-27 10:02:30Z", tick=False)
    set_credential(org_a, "e2b", "e2b_first_key_abcd", alice, Channel.WEB)
    assert credential_status(org_a, "e2b").sentence() == (
        "Saved, not tested: key ending ••••abcd, added by alice on 2026-11-27 10:02 UTC"
    )
    alan = get_user_model().objects.create_user("alan")
    time_machine.move_to("2026-11-28 08:15:00Z", tick=False)
    set_credential(org_a, "e2b", "e2b_other_key_wxyz", alan, Channel.WEB)
    assert credential_status(org_a, "e2b").sentence() == (
        "Saved, not tested: key ending ••••wxyz, replaced by alan on 2026-11-28 08:15 UTC"
    )
