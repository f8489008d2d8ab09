"""How often the finance pages ask again for their changing figures, which request is a poll,
and which template an htmx request gets.

Cost events land every few seconds while sessions run, so Cost per Issue, an issue's cost, the
ledger and month close each poll a region of their own (htmx, ``every …`` while the tab is
visible) and get that region alone back. Finance figures do not need the sessions list's 3 s:
these intervals keep the load low. Cost per Issue ranks every issue of the range on each
request, so it asks least often; its "Cost by outcome" section groups the range's ledger rows
by session (about a quarter of a second at a million ledger rows, and it grows with the
range's rows: docs/performance.md) and refreshes on a slower interval of its own.

``RENSEI_BILLING_POLL_SECONDS`` (an integer, unset by default) replaces every interval, for
tests and demos that should not wait.
"""

from __future__ import annotations

from typing import Literal

from django.conf import settings
from django.http import HttpRequest

Page = Literal["cost_per_issue", "cost_by_outcome", "issue_cost", "ledger", "months"]

POLL_SECONDS: dict[Page, int] = {
    "cost_per_issue": 20,
    "cost_by_outcome": 120,
    "issue_cost": 15,
    "ledger": 15,
    "months": 30,
}


def poll_seconds(page: Page) -> int:
    override = getattr(settings, "RENSEI_BILLING_POLL_SECONDS", None)
    return max(1, int(override)) if override else POLL_SECONDS[page]


def htmx_template(request: HttpRequest, name: str, partial: str) -> str:
    """The template an htmx request gets (filters, sorts, pages and polls swap one region):
    ``name#partial``; a full load gets the whole page, ``name``."""
    return f"{name}#{partial}" if getattr(request, "htmx", False) else name


def is_poll_of(request: HttpRequest, region: str) -> bool:
    """Whether this is htmx asking for the element ``region`` (its id), as a poll does: htmx
    names the element it will swap in the HX-Target header."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and getattr(htmx, "target", None) == region
