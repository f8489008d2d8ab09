"""The session page's cost panel labels its live estimate once (it read "Estimate estimate")."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.template.loader import render_to_string

from tests.capacity.pages import text


def test_the_running_estimate_is_labelled_once() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    cost = {
        "total": Decimal("0.0100"),
        "currency": "USD",
        "seconds": Decimal(60),
        "count": 1,
        "running": True,
        "estimate": Decimal("0.0200"),
        "open_seconds": Decimal(60),
        "open_since": now,
        "as_of": now,
        "rows": [],
    }
    shown = text(
        render_to_string(
            "billing/_session_ledger.html", {"nav_can": {"billing": True}, "cost": cost}
        )
    )
    assert "Cost so far estimate" in shown
    assert "Estimate estimate" not in shown
