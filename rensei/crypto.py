"""Secrets at rest: a MultiFernet key ring from RENSEI_ENCRYPTION_KEYS.

The first key encrypts, every key decrypts, so rotating is: put the new key first, run
``manage.py rotate_credentials``, then drop the old key. In development (DEBUG on at
start-up) with no ring configured a development key is generated once into var/ (never
committed). In production a missing or malformed ring stops start-up (see rensei.apps and
rensei.checks). Error messages name the problem, never the secret or a key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from functools import cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

_NOT_IN_RING = (
    "A stored secret cannot be decrypted with RENSEI_ENCRYPTION_KEYS: "
    "the key that encrypted it is not in the ring."
)

# Whether the deployment runs in development mode, captured once at start-up (RenseiConfig.ready).
# settings.DEBUG itself is not enough: the test runner turns it off at run time, and a test
# run must keep using the development key rather than demand a production ring.
_dev_mode: bool | None = None


class DecryptionError(Exception):
    """A stored secret could not be decrypted with the configured key ring."""


def remember_deployment_mode(*, debug: bool) -> None:
    global _dev_mode
    _dev_mode = debug


def _development() -> bool:
    return bool(settings.DEBUG) if _dev_mode is None else _dev_mode


def _dev_key_path() -> Path:
    return Path(settings.VAR_DIR) / "dev-encryption.key"


def _dev_key() -> str:
    """The development key, created once. Web, worker and beat share it through var/, so the
    file appears atomically (link of a complete temp file): two processes starting together
    never end up with different keys or read a half-written one."""
    path = _dev_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dev-key-")
        try:
            os.write(fd, Fernet.generate_key())
            os.close(fd)
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):  # another process won: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def _configured_keys() -> list[str]:
    keys = [k.strip() for k in settings.RENSEI_ENCRYPTION_KEYS if k.strip()]
    if keys:
        return keys
    if not _development():
        raise ImproperlyConfigured(
            "RENSEI_ENCRYPTION_KEYS is not set. Generate a key with "
            "`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'` and set it."
        )
    return [_dev_key()]


@cache
def key_ring() -> MultiFernet:
    fernets = []
    for position, key in enumerate(_configured_keys(), start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"RENSEI_ENCRYPTION_KEYS: key #{position} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from None
    return MultiFernet(fernets)


def reset_key_ring() -> None:
    """Forget the cached ring (after settings change, e.g. in tests)."""
    key_ring.cache_clear()


@receiver(setting_changed)
def _forget_ring_on_change(*, setting: str, **_: object) -> None:
    # Changed and restored settings (override_settings, pytest's settings fixture) take
    # effect at once: a ring cached under a test's keys never outlives that test.
    if setting == "RENSEI_ENCRYPTION_KEYS":
        reset_key_ring()


def key_ring_problem() -> str | None:
    """Why the configured ring cannot be used, or None when it can (for the system check)."""
    try:
        key_ring()
    except ImproperlyConfigured as exc:
        return str(exc)
    return None


def encrypt(plaintext: str) -> str:
    return key_ring().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return key_ring().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(_NOT_IN_RING) from None


def rotate(token: str) -> str:
    """Re-encrypt with the first key of the ring."""
    try:
        return key_ring().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(_NOT_IN_RING) from None
