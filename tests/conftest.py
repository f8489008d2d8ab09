"""Shared fixtures: the four people every feature is tested with, and a CSRF-enforcing client.

- Alice: admin of org A       - Bob: member of org A
- Fiona: finance of org A     - Charlie: admin of org B (the outsider)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User as AbstractUser

from rensei.models import Organization, Role
from tests import db_roles
from tests.factories import OrganizationFactory, member
from tests.support import CsrfClient

pytest_plugins = ["tests.services", "tests.worker", "pools.e2b_emulator.pytest_plugin"]


@pytest.fixture(scope="session")
def _owner_makes_the_test_database() -> Iterator[dict[str, Any] | None]:
    """Before pytest-django's own set-up: the owner connects, so it creates and migrates the
    test database (and drops it at the end). Yields the application role's credentials, or
    None when the suite has one role (tests/db_roles.py)."""
    owner = db_roles.owner()
    if owner is None:
        yield None
        return
    app = db_roles.connect_as(owner)
    yield app
    db_roles.connect_as(app)


@pytest.fixture(scope="session")
def django_db_setup(  # type: ignore[no-untyped-def]
    _owner_makes_the_test_database, django_db_setup, django_db_blocker
) -> Iterator[None]:
    """pytest-django's test database, then, with an owner: the owner grants the application's
    role its rights, the tests connect as that role, and the runner's flush runs as the owner."""
    app = _owner_makes_the_test_database
    if app is None:
        yield
        return
    with django_db_blocker.unblock():
        db_roles.grant_the_app_role(app["USER"])
    owner = db_roles.connect_as(app)
    with db_roles.owner_flushes(owner):
        yield
    db_roles.connect_as(owner)


@pytest.fixture
def db_owner(django_db_setup: None) -> Iterator[None]:
    """The test connects as the database's owner, not the application's role, for what only
    the owner may do. It is set up before every other fixture of the test (below), so before
    the test's transaction begins. With one role for everything it changes nothing."""
    owner = db_roles.owner()
    if owner is None:
        yield
        return
    app = db_roles.connect_as(owner)
    try:
        yield
    finally:
        db_roles.connect_as(app)


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``db_owner`` first among a test's fixtures, ahead of pytest-django's autouse one for
    a ``django_db`` mark: the role changes before the test's transaction opens."""
    for item in items:
        names = getattr(item, "fixturenames", [])
        if "db_owner" in names:
            names.remove("db_owner")
            names.insert(0, "db_owner")
