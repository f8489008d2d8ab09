"""What the session pages show of cost, handed down by the billing app.

Billing sits above sessions (it prices what sessions meter), so sessions never import it.
Instead ``BillingConfig.ready`` calls ``connect`` once at start-up with its three functions;
the pages call them through here. Without billing (never in this project, but the seam
stays honest) the pages show no cost.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from rensei.models import Organization
from sessions.models import Session


@dataclass(frozen=True)
class CostViews:
    # Context for the dashboard's cost card (templates/billing/_dashboard_cost.html).
    summary: Callable[[Organization], dict[str, Any]]
    # Context for a session page's cost section (templates/billing/_session_ledger.html).
    session: Callable[[Session, datetime], dict[str, Any]]
    # Session id → cost so far for a page of sessions, in a fixed number of queries.
    so_far: Callable[[Iterable[Session], datetime], dict[int, Decimal]]
    # What so_far says of a session with nothing billed and nothing open (None: ask so_far).
    nothing: Decimal | None = None


_views: CostViews | None = None


def connect(views: CostViews) -> None:
    global _views
    _views = views


def cost_summary(org: Organization) -> dict[str, Any] | None:
    return _views.summary(org) if _views else None


def session_cost(session: Session, now: datetime) -> dict[str, Any] | None:
    return _views.session(session, now) if _views else None


def cost_so_far(
    sessions: Iterable[Session], now: datetime, *, never_ran: Collection[int] = ()
) -> dict[int, Decimal]:
    """``never_ran``: ids the caller knows never ran (just created, queued, or moving from
    provisioning to running before their first interval opens): nothing is billed or open
    for them, so they cost no query."""
    if _views is None:
        return {}
    if not never_ran or _views.nothing is None:
        return _views.so_far(sessions, now)
    rows = list(sessions)
    ran = [s for s in rows if s.pk not in never_ran]
    out = _views.so_far(ran, now) if ran else {}
    out.update({s.pk: _views.nothing for s in rows if s.pk in never_ran})
    return out
