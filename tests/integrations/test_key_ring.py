"""Secrets at rest: rotation across key rings, and a production start refused without a ring."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from rensei.checks import encryption_keys
from rensei.credentials import resolve_credential, set_credential
from rensei.models import AuditEvent, Channel, Credential
from tests.integrations.conftest import fresh_key

SECRETS = {"org-a": "e2b_secret_of_org_a_1111", "org-b": "e2b_secret_of_org_b_2222"}


@pytest.fixture
def two_credentials_under_k1(org_a, org_b, alice, use_ring):  # type: ignore[no-untyped-def]
    k1 = fresh_key()
    use_ring(k1)
    set_credential(org_a, "e2b", SECRETS["org-a"], alice, Channel.WEB)
    set_credential(org_b, "e2b", SECRETS["org-b"], None, Channel.CLI)
    return k1


def test_rotation_moves_every_credential_to_the_new_key(  # type: ignore[no-untyped-def]
    two_credentials_under_k1, org_a, org_b, use_ring
):
    k1, k2 = two_credentials_under_k1, fresh_key()
    use_ring(k2, k1)
    out = io.StringIO()
    call_command("rotate_credentials", stdout=out)
    assert "Re-encrypted with the first key of the ring: 2 provider keys" in out.getvalue()
    assert not any(s in out.getvalue() for s in SECRETS.values())

    use_ring(k2)  # the old key is dropped
    assert resolve_credential(org_a).secret == SECRETS["org-a"]
    assert resolve_credential(org_b).secret == SECRETS["org-b"]
    for row in Credential.objects.all():
        Fernet(k2.encode()).decrypt(row.secret_encrypted.encode())  # really under K2
    event = AuditEvent.objects.get(action="credentials.rotated")
    assert event.channel == "cli" and event.detail["by_kind"]["provider keys"] == 2


def test_rotation_keeps_what_the_page_says(two_credentials_under_k1, org_a, use_ring):  # type: ignore[no-untyped-def]
    from rensei.credentials import credential_status

    before = credential_status(org_a, "e2b").sentence()
    use_ring(fresh_key(), two_credentials_under_k1)
    call_command("rotate_credentials", stdout=io.StringIO())
    assert credential_status(org_a, "e2b").sentence() == before  # a rotation is no replacement


def test_a_wrong_ring_fails_clearly_and_changes_nothing(two_credentials_under_k1, use_ring):  # type: ignore[no-untyped-def]
    stored = dict(Credential.objects.values_list("pk", "secret_encrypted"))
    use_ring(fresh_key())  # K1 is missing
    with pytest.raises(CommandError) as caught:
        call_command("rotate_credentials", stdout=io.StringIO())
    message = str(caught.value)
    assert "cannot be decrypted with RENSEI_ENCRYPTION_KEYS" in message
    assert "org-a/e2b" in message and "Nothing was changed" in message
    assert not any(s in message for s in SECRETS.values())
    assert dict(Credential.objects.values_list("pk", "secret_encrypted")) == stored


def test_a_malformed_ring_fails_clearly(two_credentials_under_k1, use_ring):  # type: ignore[no-untyped-def]
    use_ring("not-a-fernet-key")
    with pytest.raises(CommandError, match="key #1 is not a valid Fernet key"):
        call_command("rotate_credentials", stdout=io.StringIO())


def test_system_check_reports_a_malformed_ring(use_ring):  # type: ignore[no-untyped-def]
    use_ring(fresh_key(), "garbage-key")
    errors = encryption_keys()
    assert [e.id for e in errors] == ["rensei.E001"]
    assert "key #2 is not a valid Fernet key" in errors[0].msg
    assert "garbage-key" not in errors[0].msg
    use_ring(fresh_key())
    assert encryption_keys() == []


def _manage_check(tmp_path, **extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DEBUG", "RENSEI_ENCRYPTION_KEYS", "SECRET_KEY"))
    }
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "s" * 20 + uuid.uuid4().hex + uuid.uuid4().hex,
            "ALLOWED_HOSTS": "rensei.example.com",
            "RENSEI_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "rensei.settings",
            **extra,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_a_ring(tmp_path):  # type: ignore[no-untyped-def]
    out = _manage_check(tmp_path)
    assert out.returncode != 0
    assert "RENSEI_ENCRYPTION_KEYS is not set" in out.stdout + out.stderr
    assert not (tmp_path / "dev-encryption.key").exists()  # no silent development key


def test_production_refuses_to_start_with_a_malformed_ring(tmp_path):  # type: ignore[no-untyped-def]
    out = _manage_check(tmp_path, RENSEI_ENCRYPTION_KEYS=f"{fresh_key()},oops-not-a-key")
    assert out.returncode != 0
    both = out.stdout + out.stderr
    assert "key #2 is not a valid Fernet key" in both and "oops-not-a-key" not in both


def test_a_changed_ring_setting_takes_effect_and_its_restore_too() -> None:
    """A test that changes the ring leaves no stale ring behind for the tests after it (a
    worker started later, with the environment's keys, must read what this process writes)."""
    from rensei import crypto

    before = crypto.encrypt("before")
    with override_settings(RENSEI_ENCRYPTION_KEYS=[fresh_key()]):
        inside = crypto.encrypt("inside")
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(before)
    assert crypto.decrypt(before) == "before"  # the original ring is back, uncached
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(inside)
