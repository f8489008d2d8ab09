"""Secrets at rest: a MultiFernet key ring from RENSEI_ENCRYPTION_KEYS.

The first key encrypts, every key decrypts, so rotating is: put the new key first, run
``manage.py rotate_credentials``, then drop the old key. In DEBUG with no ring configured a
development key is generated once into var/ (never committed). Error messages name the
problem, never the secret.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """A stored secret could not be decrypted with the configured key ring."""


def _dev_key_path() -> Path:
    return Path(settings.VAR_DIR) / "dev-encryption.key"


def _configured_keys() -> list[str]:
    keys = [k.strip() for k in settings.RENSEI_ENCRYPTION_KEYS if k.strip()]
    if keys:
        return keys
    if not settings.DEBUG:
        raise ImproperlyConfigured(
            "RENSEI_ENCRYPTION_KEYS is not set. Generate a key with "
            "`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'` and set it."
        )
    path = _dev_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return [path.read_text().strip()]


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


def encrypt(plaintext: str) -> str:
    return key_ring().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return key_ring().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with RENSEI_ENCRYPTION_KEYS: "
            "the key that encrypted it is not in the ring."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt with the first key of the ring."""
    try:
        return key_ring().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with RENSEI_ENCRYPTION_KEYS: "
            "the key that encrypted it is not in the ring."
        ) from None
