"""Fixtures for the budgets tests: an org with a pool, a rate card and spend this month."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from pools.models import CapacityPool
from rensei.models import Organization
from sessions.intervals import open_interval
from sessions.models import Session
from tests.billing.helpers import make_issue, make_pool, make_session, run
from tests.demo.conftest import demo_org, demo_settings, seeded  # noqa: F401 (the demo's)
from tests.factories import RateCardFactory
from tests.sessions_web.conftest import api, token_a  # noqa: F401 (the API client fixtures)


@pytest.fixture
def rate_card(db: None) -> None:
    RateCardFactory.create(provider="e2b")


@pytest.fixture
def pool(org_a: Organization, rate_card: None) -> CapacityPool:
    return make_pool(org_a, "main")


@pytest.fixture
def spent(org_a: Organization, pool: CapacityPool) -> Session:
    """A session of issue ENG-1 that ran an hour this month (2 vCPU, 512 MiB: $0.1089) and
    runs again now (an open interval since a minute ago)."""
    issue = make_issue(org_a, "ENG-1")
    session = make_session(org_a, issue=issue, pool=pool)
    now = timezone.now()
    # Within this UTC month whatever the day: the hour ends a minute ago at the latest.
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = max(month_start, now - timedelta(hours=2))
    run(session, start, start + min(timedelta(hours=1), (now - start) / 2))
    open_interval(session, at=now - timedelta(seconds=60))
    return session
