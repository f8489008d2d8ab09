"""Sessions close running intervals; billing prices them: the cost event is written by
billing's ``interval_closed`` receiver inside the transaction that closes the interval."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.ledger import NoRateCard, interval_key
from billing.models import CostEvent
from rensei.models import Organization
from sessions.intervals import close_open_interval, open_interval
from sessions.models import RunningInterval
from tests.billing.helpers import make_session


@pytest.mark.django_db
def test_a_closed_interval_is_billed_once(org_a: Organization) -> None:
    session = make_session(org_a)
    now = timezone.now()
    open_interval(session, now - timedelta(minutes=10))
    closed = close_open_interval(session, now, "pause")
    assert closed is not None
    event = CostEvent.objects.get(session=session)
    assert event.idempotency_key == interval_key(closed)
    assert event.quantity_seconds == 600
    assert close_open_interval(session, now, "pause") is None  # nothing open: no second row
    assert CostEvent.objects.filter(session=session).count() == 1


@pytest.mark.django_db
def test_an_interval_that_cannot_be_billed_stays_open(org_a: Organization) -> None:
    session = make_session(org_a, provider="unpriced")  # no rate card for this provider
    now = timezone.now()
    open_interval(session, now - timedelta(minutes=10))
    with pytest.raises(NoRateCard):
        close_open_interval(session, now, "terminate")
    # The close rolled back with the failed cost event: still running, still to be billed.
    assert RunningInterval.objects.get(session=session).ended_at is None
    assert not CostEvent.objects.filter(session=session).exists()
