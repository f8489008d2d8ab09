"""Saved by auto-pause: what the paused stretches a pool's policy caused would have cost.

    policy_savings(org, pool=None, now=None) -> dict   # this UTC month, exact Decimal
    savings(request)                                   # the partial the dashboard and pool
                                                       # page load (hx-get; ?pool=<id>)

A policy pause (a ``PolicyAction`` with action ``pause``, sessions/policies.py) starts a
stretch when the pause took effect: the running interval that closed with reason ``pause``
first after the request. The stretch ends when the session ran again (its next interval),
ended, or now, whichever comes first, and is clipped to this month. Each stretch is priced as
the ledger would have priced that running time: ``exact_seconds`` × the session's vCPU and
RAM at the rate card in effect when the stretch started (``billing.ledger.price``). A pause
that did not take effect (the session kept running) saves nothing.

Pools never import billing, so the pool page and the dashboard fetch this through a URL.
Three queries whatever the number of pauses: actions, intervals, rate cards.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from billing.ledger import billing_provider, exact_seconds, price
from billing.models import AMOUNT_QUANTUM, RateCard
from pools.models import CapacityPool
from rensei.access import get_for_org, org_of, org_view
from rensei.inputs import InputError
from rensei.models import Organization
from sessions.models import PolicyAction, RunningInterval

ZERO = Decimal(0).quantize(AMOUNT_QUANTUM)
PAUSE_REASON = "pause"  # the interval's closed_reason when a pause job stops it


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def policy_savings(
    org: Organization, pool: CapacityPool | None = None, now: datetime | None = None
) -> dict[str, Any]:
    now = now or timezone.now()
    start = month_start(now)
    actions = PolicyAction.objects.filter(action="pause", session__org=org, at__lt=now).filter(
        Q(session__ended_at__isnull=True) | Q(session__ended_at__gte=start)
    )
    if pool is not None:
        actions = actions.filter(session__pool=pool)
    stretches = _stretches(
        list(actions.select_related("session__pool").order_by("at", "id")), start, now
    )
    amount, seconds = ZERO, Decimal(0)
    cards = _cards({billing_provider(s) for s, _, _ in stretches}, now)
    for session, begin, end in stretches:
        card = next(
            (c for c in cards[billing_provider(session)] if c.effective_from <= begin), None
        )
        if card is None:
            continue  # no rate to price it at: nothing would have been billed either
        stretch = exact_seconds(end - begin)
        seconds += stretch
        amount += price(stretch, session.vcpu or 0, session.memory_mb or 0, card)
    return {
        "currency": "USD",
        "amount": amount,
        "seconds": seconds,
        "pauses": len(stretches),
        "month_start": start,
        "as_of": now,
    }


def _stretches(actions: list[PolicyAction], start: datetime, now: datetime) -> list[Any]:
    """(session, begin, end) of each policy pause that took effect, clipped to the month."""
    if not actions:
        return []
    by_session: dict[int, list[RunningInterval]] = defaultdict(list)
    earliest = min(a.at for a in actions)
    intervals = RunningInterval.objects.filter(session_id__in={a.session_id for a in actions})
    for interval in intervals.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=earliest)).order_by(
        "started_at", "id"
    ):
        by_session[interval.session_id].append(interval)
    out = []
    for action in actions:
        rows = by_session[action.session_id]
        # The first interval to end after the request is the one the pause job closed.
        closed = next((i for i in rows if i.ended_at and i.ended_at >= action.at), None)
        if closed is None or closed.closed_reason != PAUSE_REASON or closed.ended_at is None:
            continue
        paused_at = closed.ended_at
        again = next((i.started_at for i in rows if i.started_at >= paused_at), None)
        ends = [t for t in (again, action.session.ended_at, now) if t is not None]
        begin, end = max(paused_at, start), min(ends)
        if end > begin:
            out.append((action.session, begin, end))
    return out


def _cards(providers: set[str], now: datetime) -> dict[str, list[RateCard]]:
    cards: dict[str, list[RateCard]] = defaultdict(list)
    if providers:
        for card in RateCard.objects.filter(
            provider__in=providers, effective_from__lte=now
        ).order_by("-effective_from"):
            cards[card.provider].append(card)
    return cards


@org_view("billing.view")
def savings(request: HttpRequest) -> HttpResponse:
    """The "saved by auto-pause" partial, for the org or one of its pools (?pool=<id>)."""
    pool = None
    raw = request.GET.get("pool", "")
    if raw:
        try:
            pool_id = _pool_id(raw)
        except InputError as exc:
            return HttpResponse(exc.message, status=400, content_type="text/plain")
        pool = get_for_org(request, CapacityPool.objects.all(), pk=pool_id)
    context = {"saved": policy_savings(org_of(request), pool), "pool": pool}
    return render(request, "billing/_savings.html", context)


def _pool_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise InputError("pool: must be a pool id (a whole number).")
    return int(raw)
