"""What sessions have cost so far, for a whole page of them in three queries.

cost so far = the session's ledger rows (net of reversals) + its open running interval
priced as if it closed now.

The open part goes through the ledger's own pieces (``billing_provider``, the card in effect
when the interval started, ``exact_seconds``, ``price``), so it is the amount
``emit_sandbox_cost_event`` would write if the interval closed at ``now``, to the last
decimal place. A provider without a rate card at that time adds nothing: the interval cannot
be priced yet, and the ledger would refuse to bill it too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Sum

from billing.ledger import billing_provider, exact_seconds, price
from billing.models import AMOUNT_QUANTUM, SECONDS_QUANTUM, CostEvent, RateCard
from sessions.models import RunningInterval, Session

ZERO = Decimal(0).quantize(AMOUNT_QUANTUM)
SECONDS_ZERO = Decimal(0).quantize(SECONDS_QUANTUM)


def _card_at(cards: list[RateCard], at: datetime) -> RateCard | None:
    """The card in effect at ``at`` from one provider's cards, newest first (as
    ``billing.ledger.rate_card_for`` picks it)."""
    return next((card for card in cards if card.effective_from <= at), None)


def ledger_sums(session_ids: Iterable[int]) -> dict[int, tuple[Decimal, Decimal]]:
    """Session id → (amount, seconds) of its ledger rows, net of reversals, in one grouped
    query; sessions without rows are left out. Quantised to the stored places like
    ``CostEventQuerySet.totals``: SQLite sums decimals through floats."""
    rows = (
        CostEvent.objects.filter(session_id__in=list(session_ids))
        .order_by()
        .values_list("session_id")
        .annotate(Sum("amount"), Sum("quantity_seconds"))
    )
    return {
        pk: (
            (amount or ZERO).quantize(AMOUNT_QUANTUM),
            (seconds or SECONDS_ZERO).quantize(SECONDS_QUANTUM),
        )
        for pk, amount, seconds in rows
    }


def cost_so_far(sessions: Iterable[Session], now: datetime) -> dict[int, Decimal]:
    """Session id → cost so far, for sessions loaded with their pool (``select_related``).

    Three queries whatever the number of sessions: ledger sums, open intervals, rate cards
    (the last only when an interval is open).
    """
    by_id = {s.pk: s for s in sessions}
    if not by_id:
        return {}
    billed = ledger_sums(by_id)
    result = {pk: billed.get(pk, (ZERO, SECONDS_ZERO))[0] for pk in by_id}
    open_intervals = list(
        RunningInterval.objects.filter(session_id__in=by_id, ended_at__isnull=True).only(
            "session_id", "started_at"
        )
    )
    if not open_intervals:
        return result
    providers = {billing_provider(by_id[i.session_id]) for i in open_intervals}
    latest_start = max(i.started_at for i in open_intervals)
    cards: dict[str, list[RateCard]] = defaultdict(list)
    for rate_card in RateCard.objects.filter(
        provider__in=providers, effective_from__lte=latest_start
    ).order_by("-effective_from"):
        cards[rate_card.provider].append(rate_card)
    for interval in open_intervals:
        session = by_id[interval.session_id]
        card = _card_at(cards[billing_provider(session)], interval.started_at)
        if card is None:
            continue
        seconds = exact_seconds(max(now - interval.started_at, timedelta(0)))
        result[session.pk] += price(seconds, session.vcpu or 0, session.memory_mb or 0, card)
    return result
