"""Fixtures for Settings → Integrations and API tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model


def fresh_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def _own_key_ring(settings: Any) -> Iterator[None]:
    """Each test encrypts under its own key (no ring outlives a test) and no test can reach
    the internet."""
    settings.RENSEI_ENCRYPTION_KEYS = [fresh_key()]
    settings.E2B_API_KEY = ""
    # Never the real E2B: a test that forgets the emulator gets "connection refused".
    settings.E2B_API_URL = settings.E2B_SANDBOX_URL = "http://127.0.0.1:9"
    yield  # the settings fixture's change and restore reset the cached ring (rensei.crypto)


@pytest.fixture
def use_ring(settings: Any):  # type: ignore[no-untyped-def]
    """use_ring(k1, k2, ...) → the ring becomes exactly these keys."""

    def apply(*keys: str) -> None:
        settings.RENSEI_ENCRYPTION_KEYS = list(keys)

    return apply


@pytest.fixture
def staff(db: None):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_superuser(
        username="sam", email="sam@example.com", password="pw-sam"
    )


@pytest.fixture
def e2b_at(settings: Any):  # type: ignore[no-untyped-def]
    """e2b_at(emulator) → the settings point the provider layer at that emulator."""

    def apply(emulator: Any) -> None:
        settings.E2B_API_URL = emulator.url
        settings.E2B_SANDBOX_URL = emulator.url

    return apply
