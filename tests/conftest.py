"""Shared fixtures: the four people every feature is tested with, and a CSRF-enforcing client.

- Alice: admin of org A       - Bob: member of org A
- Fiona: finance of org A     - Charlie: admin of org B (the outsider)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User as AbstractUser

from rensei.models import Organization, Role
from tests.factories import OrganizationFactory, member
from tests.support import CsrfClient

pytest_plugins = ["tests.services", "tests.worker", "pools.e2b_emulator.pytest_plugin"]


@pytest.fixture
def org_a(db: None) -> Organization:
    return OrganizationFactory.create(slug="org-a", name="Org A")


@pytest.fixture
def org_b(db: None) -> Organization:
    return OrganizationFactory.create(slug="org-b", name="Org B")


def _member(username: str, org: Organization, role: str) -> AbstractUser:
    user: AbstractUser = member(username, org, role)
    return user


@pytest.fixture
def alice(org_a: Organization) -> AbstractUser:
    return _member("alice", org_a, Role.ADMIN)


@pytest.fixture
def bob(org_a: Organization) -> AbstractUser:
    return _member("bob", org_a, Role.MEMBER)


@pytest.fixture
def fiona(org_a: Organization) -> AbstractUser:
    return _member("fiona", org_a, Role.FINANCE)


@pytest.fixture
def charlie(org_b: Organization) -> AbstractUser:
    return _member("charlie", org_b, Role.ADMIN)


@pytest.fixture
def people(alice: AbstractUser, bob: AbstractUser, fiona: AbstractUser, charlie: AbstractUser):  # type: ignore[no-untyped-def]
    return {"alice": alice, "bob": bob, "fiona": fiona, "charlie": charlie}


@pytest.fixture
def csrf_client() -> Iterator[CsrfClient]:
    yield CsrfClient()


@pytest.fixture
def client_as(db: None):  # type: ignore[no-untyped-def]
    """client_as(user) → a logged-in, CSRF-enforcing client for that user."""

    def make(user: AbstractUser) -> CsrfClient:
        client = CsrfClient()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def e2b_settings(e2b_emulator, settings):  # type: ignore[no-untyped-def]
    """The emulator, with Django settings (read by the provider layer) pointing at it."""
    settings.E2B_API_URL = e2b_emulator.url
    settings.E2B_SANDBOX_URL = e2b_emulator.url
    settings.E2B_API_KEY = e2b_emulator.sdk_kwargs["api_key"]
    return e2b_emulator
