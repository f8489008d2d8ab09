"""Saved by auto-pause (billing/savings.py): paused seconds the policy caused × the rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.ledger import exact_seconds, price
from billing.savings import policy_savings
from pools.models import CapacityPool
from rensei.models import Organization
from sessions.models import PolicyAction, PolicyKind, Session, SessionState
from tests.factories import (
    CapacityPoolFactory,
    RateCardFactory,
    RunningIntervalFactory,
    SessionFactory,
)

S = SessionState
pytestmark = pytest.mark.django_db
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def paused(
    org: Organization,
    pool: CapacityPool,
    ran: tuple[str, str],
    *,
    by_policy: bool = True,
    reason: str = "pause",
    again: str | None = None,
    ended: str | None = None,
) -> Session:
    """A session that ran ``ran``, was stopped (``reason``) and maybe ran ``again``."""
    state = S.TERMINATED if ended else (S.RUNNING if again else S.PAUSED)
    session: Session = SessionFactory.create(org=org, pool=pool, started=True, state=state)
    if ended:
        Session.objects.filter(pk=session.pk).update(ended_at=at(ended))
    start, stop = at(ran[0]), at(ran[1])
    RunningIntervalFactory.create(
        session=session, started_at=start, ended_at=stop, closed_reason=reason
    )
    if again:
        RunningIntervalFactory.create(session=session, started_at=at(again))
    if by_policy:
        PolicyAction.objects.create(
            session=session,
            kind=PolicyKind.IDLE_PAUSE,
            action="pause",
            reason="idle",
            at=stop - timedelta(seconds=2),
        )
    return session


@pytest.fixture
def world(org_a: Organization, org_b: Organization) -> dict[str, Any]:
    card = RateCardFactory.create(provider="e2b")
    pool = CapacityPoolFactory.create(org=org_a, name="main")
    other = CapacityPoolFactory.create(org=org_a, name="other")
    paused(org_a, pool, ("2025-03-10 09:00", "2025-03-10 10:00:00.250"))  # still paused
    paused(org_a, other, ("2025-03-09 07:00", "2025-03-09 08:00"), again="2025-03-09 09:30")
    # Paused last month, terminated this month: only this month's hour counts.
    paused(org_a, pool, ("2025-02-28 20:00", "2025-02-28 23:00"), ended="2025-03-01 01:00")
    paused(org_a, pool, ("2025-03-10 08:00", "2025-03-10 09:00"), by_policy=False)  # by hand
    paused(org_a, pool, ("2025-03-10 08:00", "2025-03-10 09:00"), reason="terminate")
    paused(org_b, CapacityPoolFactory.create(org=org_b), ("2025-03-10 08:00", "2025-03-10 09:00"))
    return {"card": card, "pool": pool, "other": other}


def test_savings_this_month_are_paused_seconds_times_the_rate(
    org_a: Organization, world: dict[str, Any]
) -> None:
    card = world["card"]
    stretches = [
        at("2025-03-10 12:00") - at("2025-03-10 10:00:00.250"),
        at("2025-03-09 09:30") - at("2025-03-09 08:00"),
        at("2025-03-01 01:00") - at("2025-03-01 00:00"),
    ]
    with CaptureQueriesContext(connection) as ctx:
        saved = policy_savings(org_a, now=NOW)
    assert len(ctx.captured_queries) == 3
    assert saved["pauses"] == 3
    assert saved["seconds"] == sum(exact_seconds(d) for d in stretches)
    assert saved["amount"] == sum(price(exact_seconds(d), 2, 1024, card) for d in stretches)
    assert saved["month_start"] == at("2025-03-01 00:00")

    main = policy_savings(org_a, world["pool"], now=NOW)
    assert main["pauses"] == 2
    assert main["amount"] == price(exact_seconds(stretches[0]), 2, 1024, card) + price(
        exact_seconds(stretches[2]), 2, 1024, card
    )


def test_savings_partial_for_finance_and_org_walls(
    client_as: Any, fiona: Any, bob: Any, charlie: Any, world: dict[str, Any]
) -> None:
    url = "/billing/auto-pause-savings/"
    page = client_as(fiona).get(url)
    assert page.status_code == 200
    assert "Saved by auto-pause" in page.content.decode()
    assert client_as(fiona).get(f"{url}?pool={world['pool'].pk}").status_code == 200
    assert client_as(charlie).get(f"{url}?pool={world['pool'].pk}").status_code == 404
    bad = client_as(fiona).get(f"{url}?pool=abc")
    assert bad.status_code == 400 and b"pool" in bad.content
    assert client_as(bob).get(url).status_code == 403  # members do not see money
