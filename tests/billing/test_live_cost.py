"""Cost so far (the sessions list's column): billed rows plus the open interval priced now,
equal to what the ledger bills when that interval closes, in a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.ledger import interval_key, reverse_cost_event
from billing.live_cost import cost_so_far
from billing.models import CostEvent
from sessions.intervals import close_open_interval, open_interval
from sessions.models import Session
from tests.billing.helpers import at, expected_amount, ledger_sum, make_pool, make_session, run
from tests.factories import RateCardFactory

pytestmark = pytest.mark.django_db
NOW = at("2025-03-10 12:00:00.250")


def _page(*sessions: Session) -> list[Session]:
    # As the list loads them: with the pool, which decides the billing provider.
    return list(Session.objects.filter(pk__in=[s.pk for s in sessions]).select_related("pool"))


def test_cost_so_far_is_what_closing_the_interval_bills(org_a):
    session = make_session(org_a, vcpu=3, memory_mb=1536)
    run(session, at("2025-03-10 09:00"), at("2025-03-10 09:00:07.5"))
    open_interval(session, at=at("2025-03-10 11:58:51.125"))

    shown = cost_so_far(_page(session), NOW)[session.pk]

    interval = close_open_interval(session, at=NOW, reason="pause")
    assert interval is not None
    event = CostEvent.objects.get(idempotency_key=interval_key(interval))
    assert shown == ledger_sum(session=session)  # every decimal place, not only the cent
    assert shown == expected_amount(Decimal("7.5"), 3, 1536) + event.amount
    assert cost_so_far(_page(session), NOW + timedelta(hours=1))[session.pk] == shown  # closed


def test_the_card_in_effect_when_the_interval_started_prices_it(org_a):
    RateCardFactory.create(
        provider="e2b",
        effective_from=at("2025-03-10 00:00"),
        vcpu_second_price=Decimal("0.001"),
        gib_second_price=Decimal("0.0001"),
    )
    before = make_session(org_a, vcpu=1, memory_mb=1024)
    after = make_session(org_a, vcpu=1, memory_mb=1024)
    open_interval(before, at=at("2025-03-09 23:59:00"))  # the old card (the accrual splits it)
    open_interval(after, at=at("2025-03-10 11:00:00"))

    costs = cost_so_far(_page(before, after), NOW)

    for session in (before, after):
        interval = close_open_interval(session, at=NOW, reason="pause")
        assert interval is not None
        assert costs[session.pk] == CostEvent.objects.get(session=session).amount
    assert costs[after.pk] == (Decimal("3600.250") * Decimal("0.0011")).quantize(Decimal("1e-12"))


def test_reversals_count_and_sessions_without_cost_are_zero(org_a, alice):
    billed = make_session(org_a)
    row = run(billed, at("2025-03-10 09:00"), at("2025-03-10 10:00"))
    reverse_cost_event(row, reason="credit", actor=alice)
    idle = make_session(org_a)
    costs = cost_so_far(_page(billed, idle), NOW)
    assert costs == {billed.pk: Decimal(0), idle.pk: Decimal(0)}
    assert cost_so_far([], NOW) == {}


def test_an_interval_no_card_can_price_adds_nothing(org_a):
    session = make_session(org_a, provider="nowhere")
    open_interval(session, at=at("2025-03-10 11:00"))
    assert cost_so_far(_page(session), NOW) == {session.pk: Decimal(0)}


def test_the_pool_decides_the_provider_like_the_ledger(org_a):
    RateCardFactory.create(
        provider="fake",
        effective_from=at("2025-01-01 00:00"),
        vcpu_second_price=Decimal("1"),
        gib_second_price=Decimal("0"),
    )
    session = make_session(org_a, provider="", pool=make_pool(org_a, "f", provider="fake"))
    open_interval(session, at=at("2025-03-10 11:59:58"))
    assert cost_so_far(_page(session), NOW)[session.pk] == Decimal("2.250") * 2


def test_three_queries_whatever_the_number_of_sessions(org_a):
    def grow(n: int) -> None:
        for i in range(n):
            s = make_session(org_a, pool=make_pool(org_a, f"p{Session.objects.count()}"))
            run(s, at("2025-03-10 09:00"), at("2025-03-10 09:01"))
            if i % 2:
                open_interval(s, at=at("2025-03-10 11:00"))

    def count() -> int:
        page = _page(*Session.objects.all())
        with CaptureQueriesContext(connection) as ctx:
            cost_so_far(page, NOW)
        return len(ctx.captured_queries)

    grow(3)
    assert count() == 3
    grow(30)
    assert count() == 3
