"""Fixtures for the capacity tests: pools, the fake provider, the emulator wired into settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pools.models import CapacityPool
from pools.providers.fake import FakeCloud, registered
from rensei.models import Organization
from tests.factories import CapacityPoolFactory


@pytest.fixture
def fake_cloud() -> Iterator[FakeCloud]:
    """The in-memory provider, registered as kind "fake" for this test only."""
    with registered() as cloud:
        yield cloud


@pytest.fixture
def make_pool(db: None) -> Callable[..., CapacityPool]:
    def make(org: Organization, name: str = "main", **fields: Any) -> CapacityPool:
        return CapacityPoolFactory.create(org=org, name=name, **fields)

    return make
