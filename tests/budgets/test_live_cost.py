"""Live cost on the dashboard: each recent session's cost so far (ledger + its open interval
priced now) for people who see cost, in the region the page polls; none for members."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from billing.live_cost import cost_so_far
from billing.money import format_money
from rensei.models import Organization
from sessions.models import Session

pytestmark = pytest.mark.django_db


def test_dashboard_shows_cost_so_far_to_finance_only(
    org_a: Organization, spent: Session, fiona: Any, bob: Any, client_as: Any
) -> None:
    before = cost_so_far([Session.objects.select_related("pool").get(pk=spent.pk)], timezone.now())
    poll = client_as(fiona).get("/", HTTP_HX_REQUEST="true").content.decode()
    assert "Cost so far" in poll
    # A few seconds later at most: the same cents (the exact figure is in the cell's title).
    assert format_money(before[spent.pk], "USD") in poll
    assert "Cost so far" not in client_as(bob).get("/").content.decode()
