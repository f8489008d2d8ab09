"""Fixtures for the sessions engine: the fake provider, pools on it, and rate cards.

Unit tests call the job bodies (``sessions.jobs``) directly: in a non-transactional test,
``delay_on_commit`` never sends anything, so each test decides when a job runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pools.config import validate_e2b_config
from pools.models import CapacityPool
from pools.providers.fake import FakeCloud, registered
from rensei.models import Organization
from sessions import services
from sessions.models import Session
from tests.factories import CapacityPoolFactory, RateCardFactory


def ensure_rate_cards() -> None:
    """Transactional tests flush the seeded card; the ledger needs one per provider."""
    for provider in ("e2b", "fake"):
        RateCardFactory.create(provider=provider)


@pytest.fixture
def rate_cards(db: None) -> None:
    ensure_rate_cards()


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with registered() as fake_cloud:
        yield fake_cloud


def make_pool(org: Organization, name: str, provider: str = "fake", **extra: Any) -> CapacityPool:
    config = validate_e2b_config(extra.pop("config", {"templateId": "donmai-worker"}))
    return CapacityPoolFactory.create(org=org, name=name, provider=provider, config=config, **extra)


@pytest.fixture
def pool(org_a: Organization, cloud: FakeCloud, rate_cards: None) -> CapacityPool:
    return make_pool(org_a, "fake-1", order=1)


@pytest.fixture
def new_session(org_a: Organization) -> Callable[..., Session]:
    """new_session(**overrides) → a session created through the service API."""

    def make(**overrides: Any) -> Session:
        org = overrides.pop("org", org_a)
        kwargs: dict[str, Any] = {
            "issue_key": "ENG-142",
            "issue_title": "Fix the login page",
            "runtime_kinds": ["npm"],
            "requirement_kinds": ["git"],
        }
        kwargs.update(overrides)
        return services.create_session(org, **kwargs)

    return make
