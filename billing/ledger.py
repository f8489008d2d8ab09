"""Writing the ledger. ``emit_sandbox_cost_event`` is the one way a cost row is born."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction

from billing.models import AMOUNT_QUANTUM, SECONDS_QUANTUM, CostEvent, CostKind, RateCard
from sessions.models import RunningInterval

GIB_MB = Decimal(1024)


class NoRateCard(LookupError):
    pass


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


def price(seconds: Decimal, vcpu: int, memory_mb: int, card: RateCard) -> Decimal:
    """seconds × (vCPU × vCPU rate + GiB × GiB rate), in Decimal, quantised once at the end."""
    per_second = (
        Decimal(vcpu) * card.vcpu_second_price
        + (Decimal(memory_mb) / GIB_MB) * card.gib_second_price
    )
    return (seconds * per_second).quantize(AMOUNT_QUANTUM)


def interval_key(interval: RunningInterval) -> str:
    return f"sandbox-seconds:session-{interval.session_id}:interval-{interval.pk}"


def emit_sandbox_cost_event(interval: RunningInterval) -> CostEvent:
    """Record the cost of one closed running interval, exactly once.

    The idempotency key is derived from the session and the interval, so a retried emission
    returns the row the first one wrote. The rate is the card in effect when the interval
    started. Call it in the same transaction that closes the interval.
    """
    if interval.ended_at is None:
        raise ValueError("cannot bill an interval that is still open")
    key = interval_key(interval)
    existing = CostEvent.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return existing
    session = interval.session
    provider = session.provider or (session.pool.provider if session.pool else "e2b")
    card = rate_card_for(provider, interval.started_at)
    seconds = exact_seconds(interval.ended_at - interval.started_at)
    vcpu = session.vcpu or 0
    memory_mb = session.memory_mb or 0
    try:
        with transaction.atomic():
            return CostEvent.objects.create(
                org_id=session.org_id,
                session=session,
                issue_id=session.issue_id,
                pool_id=session.pool_id,
                provider=provider,
                kind=CostKind.SANDBOX_SECONDS,
                quantity_seconds=seconds,
                vcpu=vcpu,
                memory_mb=memory_mb,
                rate_card=card,
                amount=price(seconds, vcpu, memory_mb, card),
                currency=card.currency,
                interval_start=interval.started_at,
                interval_end=interval.ended_at,
                occurred_at=interval.ended_at,
                idempotency_key=key,
            )
    except IntegrityError:
        # Another worker emitted the same interval between our read and our insert.
        return CostEvent.objects.get(idempotency_key=key)
