"""The demo org, seeded the way `make run` seeds it (DEBUG on, E2B URL on loopback)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from rensei.models import Organization

# Nothing listens here in these tests: seeding only queues the live sessions' jobs.
LOCAL_EMULATOR = "http://127.0.0.1:3999"


def seed(**options: Any) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def demo_settings(settings: Any) -> Any:
    settings.DEBUG = True
    settings.E2B_API_URL = LOCAL_EMULATOR
    settings.E2B_SANDBOX_URL = LOCAL_EMULATOR
    settings.E2B_API_KEY = ""
    # The demo users' passwords: a fast hasher keeps each seed quick in tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


@pytest.fixture
def seeded(db: None, demo_settings: Any) -> str:
    """The first seed_demo run's output."""
    return seed()


@pytest.fixture
def demo_org(seeded: str) -> Organization:
    return Organization.objects.get(slug="demo")


@pytest.fixture
def demo_admin(seeded: str) -> Any:
    return get_user_model().objects.get(username="admin")


@pytest.fixture
def demo_finance(seeded: str) -> Any:
    return get_user_model().objects.get(username="finance")
