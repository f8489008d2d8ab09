"""Settling a reconciliation finding: one ledger entry with a reason, audited.

- **adjust**: a new ``adjustment`` row of exactly the finding's seconds and amount (positive
  when the ledger lacked them, negative when it held too much), attributed to the finding's
  day (its interval is that day) and dated there, or in the first open month when the
  day's month is closed (``billing.closing``).
- **reverse**: reverse one of the session's ledger rows of that day
  (``billing.ledger.reverse_cost_event``), e.g. a row billed twice.

A finding is settled once: the conditional update on ``settled_at`` makes a second attempt
(or a race) lose, and the whole settlement rolls back with it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.closing import ledger_date
from billing.events_out import emit_correction
from billing.ledger import AlreadyReversed, billing_provider, rate_card_for, reverse_cost_event
from billing.models import CostEvent, CostKind, Discrepancy
from billing.reconciliation import day_bounds
from rensei.audit import record
from rensei.models import Channel

METHODS = {"adjust": "Adjustment entry", "reverse": "Reverse a ledger entry"}


class SettleRefused(ValueError):
    """The finding cannot be settled this way; the message says why."""


def settlement_key(discrepancy: Discrepancy) -> str:
    return f"settlement:discrepancy-{discrepancy.pk}"


def _adjustment(d: Discrepancy, reason: str, user: Any) -> CostEvent:
    start, end = day_bounds(d.day)
    session = d.session
    provider = billing_provider(session) if session is not None else "e2b"
    occurred_at, adjusts = ledger_date(d.org_id, end)
    card = rate_card_for(provider, start)
    row = CostEvent.objects.create(
        org_id=d.org_id,
        session=session,
        issue_id=session.issue_id if session is not None else None,
        pool_id=session.pool_id if session is not None else None,
        provider=provider,
        kind=CostKind.ADJUSTMENT,
        quantity_seconds=d.seconds,
        vcpu=(session.vcpu or 0) if session is not None else 0,
        memory_mb=(session.memory_mb or 0) if session is not None else 0,
        rate_card=card,
        amount=d.amount,
        currency=card.currency,
        interval_start=start,
        interval_end=end,
        occurred_at=occurred_at,
        adjusts_month=adjusts,
        idempotency_key=settlement_key(d),
        reason=f"{d.get_kind_display()} on {d.day:%Y-%m-%d}: {reason}",
        actor=user,
    )
    emit_correction(row)  # sandbox.cost, in the settlement's transaction
    return row


def _reversal(d: Discrepancy, entry_id: int | None, reason: str, actor: Any) -> CostEvent:
    if d.session_id is None:
        raise SettleRefused("This finding has no session of ours: settle it with an adjustment.")
    start, end = day_bounds(d.day)
    entry = CostEvent.objects.filter(
        pk=entry_id or 0,
        org_id=d.org_id,
        session_id=d.session_id,
        interval_end__gt=start,
        interval_end__lte=end,
        reverses__isnull=True,
    ).first()
    if entry is None:
        raise SettleRefused(
            f"Entry: choose one of session {d.session_id}'s ledger entries of {d.day:%Y-%m-%d}."
        )
    try:
        return reverse_cost_event(entry, reason=reason, actor=actor, channel=Channel.WEB)
    except AlreadyReversed as exc:
        raise SettleRefused(str(exc)) from None


def settle(
    discrepancy: Discrepancy,
    *,
    method: str,
    reason: str,
    actor: Any,
    entry_id: int | None = None,
) -> CostEvent:
    reason = reason.strip()
    if not reason:
        raise SettleRefused("Reason: say why this settles the finding.")
    if method not in METHODS:
        raise SettleRefused("Method: choose an adjustment entry or a reversal.")
    user = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        # of=("self",): PostgreSQL locks no nullable side of an outer join (the session).
        d = (
            Discrepancy.objects.select_for_update(of=("self",))
            .select_related("session", "org")
            .get(pk=discrepancy.pk)
        )
        if d.settled_at is not None:
            raise SettleRefused("This finding is settled already.")
        row = _adjustment(d, reason, user) if method == "adjust" else None
        if row is None:
            row = _reversal(d, entry_id, reason, actor)
        won = Discrepancy.objects.filter(pk=d.pk, settled_at__isnull=True).update(
            settled_at=timezone.now(), settled_by=user, settle_reason=reason, settlement=row
        )
        if not won:
            raise SettleRefused("This finding is settled already.")
        record(
            org=d.org,
            action="reconciliation.settled",
            target=f"discrepancy {d.pk}",
            actor=actor,
            channel=Channel.WEB,
            detail={
                "kind": d.kind,
                "day": f"{d.day:%Y-%m-%d}",
                "session": d.session_id,
                "method": method,
                "entry": row.pk,
                "amount": str(row.amount),
                "reason": reason[:500],
            },
        )
    return row
