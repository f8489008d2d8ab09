"""Writing the ledger.

``emit_sandbox_cost_event`` is the one way a cost row is born; ``reverse_cost_event`` is the
one way a row is corrected (a new, negative row). Nothing updates or deletes a row.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction

from billing.closing import ledger_date
from billing.events_out import emit_correction, emit_cost
from billing.models import AMOUNT_QUANTUM, SECONDS_QUANTUM, CostEvent, CostKind, RateCard
from rensei.audit import record
from rensei.models import Channel
from sessions.models import RunningInterval, Session

GIB_MB = Decimal(1024)


class NoRateCard(LookupError):
    pass


class AlreadyReversed(Exception):
    """The row has a reversing row already; a second reversal is refused."""


class ReversalNotReversible(AlreadyReversed):
    """The row is itself a reversal: reversing it would re-bill the original (the database
    refuses it too, billing/triggers.py)."""


def exact_seconds(delta: timedelta) -> Decimal:
    """A timedelta as Decimal seconds, exact to the microsecond, rounded to milliseconds."""
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return (Decimal(micros) / Decimal(1_000_000)).quantize(SECONDS_QUANTUM)


def rate_card_for(provider: str, at: datetime) -> RateCard:
    card = (
        RateCard.objects.filter(provider=provider, effective_from__lte=at)
        .order_by("-effective_from")
        .first()
    )
    if card is None:
        raise NoRateCard(f"no {provider} rate card in effect at {at:%Y-%m-%d %H:%M} UTC")
    return card


def price_per_second(vcpu: int, memory_mb: int, card: RateCard) -> Decimal:
    return (
        Decimal(vcpu) * card.vcpu_second_price
        + (Decimal(memory_mb) / GIB_MB) * card.gib_second_price
    )


def price(seconds: Decimal, vcpu: int, memory_mb: int, card: RateCard) -> Decimal:
    """seconds × (vCPU × vCPU rate + GiB × GiB rate), in Decimal, quantised once at the end."""
    return (seconds * price_per_second(vcpu, memory_mb, card)).quantize(AMOUNT_QUANTUM)


def billing_provider(session: Session) -> str:
    """The provider a session is billed under: its own, else its pool's, else E2B."""
    if session.provider:
        return session.provider
    return session.pool.provider if session.pool_id and session.pool else "e2b"


def interval_key(interval: RunningInterval) -> str:
    return f"sandbox-seconds:session-{interval.session_id}:interval-{interval.pk}"


def reversal_key(original: CostEvent) -> str:
    return f"reversal:{original.pk}"


def _late(adjusts: date | None) -> dict[str, object]:
    """The fields of a row for usage in a closed month: an adjustment saying which."""
    if adjusts is None:
        return {}
    return {
        "adjusts_month": adjusts,
        "reason": f"late usage for closed month {adjusts:%Y-%m}",
    }


def emit_sandbox_cost_event(interval: RunningInterval) -> CostEvent:
    """Record the cost of one closed running interval, exactly once.

    The idempotency key is derived from the session and the interval, so a retried emission
    returns the row the first one wrote. The rate is the card in effect when the interval
    started (cards change at UTC midnights, where the daily accrual splits intervals).
    Call it in the same transaction that closes the interval; the database adds the row to
    the daily rollup in that transaction too.
    """
    if interval.ended_at is None:
        raise ValueError("cannot bill an interval that is still open")
    key = interval_key(interval)
    existing = CostEvent.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return existing
    session = interval.session
    provider = billing_provider(session)
    card = rate_card_for(provider, interval.started_at)
    seconds = exact_seconds(interval.ended_at - interval.started_at)
    vcpu = session.vcpu or 0
    memory_mb = session.memory_mb or 0
    # Usage in a closed month is dated in the first open month, saying which it adjusts.
    occurred_at, adjusts = ledger_date(session.org_id, interval.ended_at)
    try:
        with transaction.atomic():
            row = CostEvent.objects.create(
                org_id=session.org_id,
                session=session,
                issue_id=session.issue_id,
                pool_id=session.pool_id,
                provider=provider,
                kind=CostKind.ADJUSTMENT if adjusts else CostKind.SANDBOX_SECONDS,
                quantity_seconds=seconds,
                vcpu=vcpu,
                memory_mb=memory_mb,
                rate_card=card,
                amount=price(seconds, vcpu, memory_mb, card),
                currency=card.currency,
                interval_start=interval.started_at,
                interval_end=interval.ended_at,
                occurred_at=occurred_at,
                idempotency_key=key,
                **_late(adjusts),
            )
            emit_cost(row, session)  # sandbox.cost, in the row's own savepoint
            return row
    except IntegrityError:
        # Another worker emitted the same interval between our read and our insert.
        return CostEvent.objects.get(idempotency_key=key)


def bill_closed_interval(sender: object, interval: RunningInterval, **kwargs: object) -> None:
    """``sessions.intervals.interval_closed`` receiver (connected in ``billing.apps``): the
    cost event, in the transaction that closed the interval."""
    emit_sandbox_cost_event(interval)


def reverse_cost_event(
    event: CostEvent,
    *,
    reason: str,
    actor: AbstractBaseUser | AnonymousUser | None,
    channel: str = Channel.ADMIN,
) -> CostEvent:
    """Write the row that cancels ``event`` (amount and quantity negated) and audit it.

    The reversal keeps the original's usage time (``occurred_at``), so reports for that
    period show the net; ``created_at`` says when it was posted. Raises ``AlreadyReversed``
    if the row was reversed before (the OneToOne and the idempotency key make a race lose
    the same way), ``ValueError`` without a reason.
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("A reason is required to reverse a ledger entry.")
    user = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        original = CostEvent.objects.select_for_update().select_related("org").get(pk=event.pk)
        if original.reverses_id is not None:
            raise ReversalNotReversible(
                f"Ledger entry {original.pk} is a reversal; a reversal is never reversed."
            )
        if CostEvent.objects.filter(reverses=original).exists():
            raise AlreadyReversed(f"Ledger entry {original.pk} has been reversed already.")
        # A reversal keeps the original's usage day, unless that month is closed.
        occurred_at, adjusts = ledger_date(original.org_id, original.occurred_at)
        try:
            with transaction.atomic():
                reversal = CostEvent.objects.create(
                    org=original.org,
                    session_id=original.session_id,
                    issue_id=original.issue_id,
                    pool_id=original.pool_id,
                    provider=original.provider,
                    kind=original.kind,
                    quantity_seconds=-original.quantity_seconds,
                    vcpu=original.vcpu,
                    memory_mb=original.memory_mb,
                    rate_card_id=original.rate_card_id,
                    amount=-original.amount,
                    currency=original.currency,
                    interval_start=original.interval_start,
                    interval_end=original.interval_end,
                    occurred_at=occurred_at,
                    adjusts_month=adjusts,
                    idempotency_key=reversal_key(original),
                    reverses=original,
                    reason=reason,
                    actor=user,  # type: ignore[misc]
                )
                emit_correction(reversal)  # sandbox.cost, amounts negated
        except IntegrityError:
            raise AlreadyReversed(
                f"Ledger entry {original.pk} has been reversed already."
            ) from None
        record(
            org=original.org,
            action="ledger.reversed",
            target=f"ledger entry {original.pk}",
            actor=actor,
            channel=channel,
            detail={
                "reversed": original.pk,
                "reversal": reversal.pk,
                "amount": str(reversal.amount),
                "currency": reversal.currency,
                "reason": reason[:500],
            },
        )
    return reversal
