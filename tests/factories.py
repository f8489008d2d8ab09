"""Test data for every test package, built one way (factory_boy).

Each factory makes a row as the product would leave it, with the fewest fields a test needs
to name: ``SessionFactory.create(org=org_a, state="paused")``. The package fixtures
(``make_pool``, ``make_session``…) are thin wrappers over these, kept where many tests
already call them. Factories write straight through the ORM, never through the services:
a test that needs the service's side effects (jobs, audit rows) calls the service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from factory.django import DjangoModelFactory

from billing.models import RateCard
from pools.models import CapacityPool
from rensei.models import Credential, Membership, Organization, Role
from sessions.models import (
    CommandRun,
    Issue,
    RunningInterval,
    Session,
    SessionState,
    SessionTransition,
)

# The states in which a session has had a sandbox (and so a sandbox id, template and size).
_NEVER_STARTED = (SessionState.QUEUED, SessionState.PROVISIONING, SessionState.FAILED)

# The card every test prices with: the published E2B figures.
VCPU_SECOND_PRICE = Decimal("0.000014")
GIB_SECOND_PRICE = Decimal("0.0000045")


class OrganizationFactory(DjangoModelFactory[Organization]):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"org-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())


class UserFactory(DjangoModelFactory[Any]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    class Params:
        # Each person's own password, "pw-<username>", for the tests that log in by form.
        raw_password = factory.LazyAttribute(lambda o: f"pw-{o.username}")

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.LazyAttribute(lambda o: make_password(o.raw_password))


class MembershipFactory(DjangoModelFactory[Membership]):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    org = factory.SubFactory(OrganizationFactory)
    role = Role.MEMBER


def member(username: str, org: Organization, role: str = Role.MEMBER, **user: Any) -> Any:
    """A user with one membership: the people of tests/conftest.py."""
    person = UserFactory.create(username=username, **user)
    MembershipFactory.create(user=person, org=org, role=role)
    return person


class CredentialFactory(DjangoModelFactory[Credential]):
    """A stored key as a row. Tests of the key itself go through rensei.credentials."""

    class Meta:
        model = Credential

    org = factory.SubFactory(OrganizationFactory)
    provider = "e2b"
    secret_encrypted = "x"
    last_four = "abcd"


class CapacityPoolFactory(DjangoModelFactory[CapacityPool]):
    """An E2B pool on the worker template; ``provider="fake"`` for the in-memory cloud."""

    class Meta:
        model = CapacityPool

    org = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"pool-{n}")
    provider = "e2b"
    config = factory.LazyFunction(lambda: {"templateId": "donmai-worker"})


class IssueFactory(DjangoModelFactory[Issue]):
    class Meta:
        model = Issue
        django_get_or_create = ("org", "key")

    org = factory.SubFactory(OrganizationFactory)
    key = factory.Sequence(lambda n: f"ENG-{n + 1}")
    title = factory.LazyAttribute(lambda o: f"Title of {o.key}")


def _record_transitions(
    session: Session, create: bool, extracted: list[tuple[str, str, datetime]] | None, **_: Any
) -> None:
    """transitions=[(from, to, at), …]: the state history, at the given times."""
    for from_state, to_state, at in extracted or []:
        row = SessionTransition.objects.create(
            session=session, from_state=from_state, to_state=to_state
        )
        SessionTransition.objects.filter(pk=row.pk).update(at=at)


class SessionFactory(DjangoModelFactory[Session]):
    """A session row in ``state``; with ``started=True`` it carries what a sandbox gives it
    (id, template, size), as the engine leaves a session that has run."""

    class Meta:
        model = Session
        # The history hook writes its own rows; the session needs no second save.
        skip_postgeneration_save = True

    class Params:
        started = factory.Trait(
            # Numbered by the rows so far, so a test's first sandbox is always sbx-0001.
            sandbox_id=factory.LazyFunction(lambda: f"sbx-{Session.objects.count() + 1:04d}"),
            template="donmai-worker",
            vcpu=2,
            memory_mb=1024,
        )

    org = factory.SubFactory(OrganizationFactory)
    issue = None
    pool = None
    provider = "e2b"
    state = SessionState.RUNNING

    transitions = factory.PostGeneration(_record_transitions)


def has_started(state: str) -> bool:
    """Whether a session in ``state`` has had a sandbox."""
    return state not in _NEVER_STARTED


class RunningIntervalFactory(DjangoModelFactory[RunningInterval]):
    class Meta:
        model = RunningInterval

    session = factory.SubFactory(SessionFactory)
    started_at = factory.LazyFunction(lambda: datetime.now(UTC))
    ended_at = None


class CommandRunFactory(DjangoModelFactory[CommandRun]):
    class Meta:
        model = CommandRun

    session = factory.SubFactory(SessionFactory)
    command = "echo hello"


class RateCardFactory(DjangoModelFactory[RateCard]):
    """The card in effect since 2024 for ``provider``; get-or-create, as the seeded one."""

    class Meta:
        model = RateCard
        django_get_or_create = ("provider", "effective_from")

    provider = "e2b"
    effective_from = datetime(2024, 1, 1, tzinfo=UTC)
    vcpu_second_price = VCPU_SECOND_PRICE
    gib_second_price = GIB_SECOND_PRICE
