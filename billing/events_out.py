"""``sandbox.cost``: each ledger row as Rensei's cost event, written to the outbox.

Called by ``billing.ledger`` in the transaction (the savepoint) that writes the row, so a
row and its event exist together or not at all. The shape is Rensei's cost event
(docs/events.md); amounts stay exact decimals, written as strings.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing.models import CostEvent
from events import types
from events.outbox import emit
from sessions.models import Session

GIB_MB = Decimal(1024)


def cost_event_json(row: CostEvent, session: Session | None) -> dict[str, Any]:
    seconds = Decimal(row.quantity_seconds)
    card = row.rate_card
    issue = session.issue if session is not None and session.issue_id else None
    return {
        "kind": "sandbox-cost",
        "sessionId": str(session.pk) if session is not None else None,
        "providerId": row.provider,
        "wallClockMs": int(seconds * 1000),
        "vCpuSeconds": str(seconds * row.vcpu),
        "memoryGbSeconds": str((seconds * row.memory_mb / GIB_MB).quantize(Decimal("0.001"))),
        # Only running time is billed (paused time costs nothing and has no row).
        "inState": "running",
        "estimatedCents": str(Decimal(row.amount) * 100),
        "currency": row.currency,
        "rateCard": {
            "id": str(card.pk),
            "provider": card.provider,
            "vCpuSecondPrice": str(card.vcpu_second_price),
            "memoryGbSecondPrice": str(card.gib_second_price),
            "currency": card.currency,
            "effectiveFrom": card.effective_from,
        },
        "capturedAt": row.interval_end or row.occurred_at,
        "intervalStart": row.interval_start,
        "issueKey": issue.key if issue is not None else None,
        "idempotencyKey": row.idempotency_key,
        "costEventId": row.pk,
        "ledgerKind": row.kind,
        # A correction: the row it cancels (a reversal, amounts negated), why, and the closed
        # month it adjusts when it is dated in the first open one.
        "reverses": row.reverses_id,
        "reason": row.reason or None,
        "adjustsMonth": f"{row.adjusts_month:%Y-%m}" if row.adjusts_month else None,
    }


def emit_cost(row: CostEvent, session: Session | None) -> None:
    session_id = session.pk if session is not None else None
    emit(row.org_id, types.SANDBOX_COST, cost_event_json(row, session), session_id=session_id)


def emit_correction(row: CostEvent) -> None:
    """``sandbox.cost`` for a row written by a person (a reversal, a settlement)."""
    session = (
        Session.objects.select_related("issue").get(pk=row.session_id) if row.session_id else None
    )
    emit_cost(row, session)
