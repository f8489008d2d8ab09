"""Changing budgets: what the pages and the API's ``issue.budget_usd`` call. Every change is
audited, and the org's budgets are evaluated again at once, so raising a budget lifts its
block without waiting for the next pass.

    save_budget(org, values, *, budget=None, actor, channel) -> Budget
    release(budget, *, actor, channel) -> int        # lift enforcement for this period
    set_issue_budget(issue, amount, actor, channel)  # the dispatcher's per-issue budget
    blocks(org_id, issue_id) -> admission.Blocks     # what the create path asks
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.money import format_money
from budgets.consumption import issue_period, month_period
from budgets.models import ActionKind, Budget, BudgetAction, BudgetState, Enforcement, Scope
from budgets.sweep import active_blocks, evaluate_org
from rensei.audit import record
from rensei.models import Organization
from sessions import admission
from sessions.actions import request_resume
from sessions.dispatch import dispatch_org_waiting
from sessions.models import Issue, Session, SessionState

FIELDS = ("scope", "pool", "issue", "amount_usd", "thresholds", "enforcement")


def _snapshot(budget: Budget) -> dict[str, Any]:
    return {
        "scope": budget.scope,
        "pool": budget.pool.name if budget.pool else None,
        "issue": budget.issue.key if budget.issue else None,
        "amount_usd": str(budget.amount_usd),
        "thresholds": list(budget.thresholds),
        "enforcement": budget.enforcement,
    }


def target(budget: Budget) -> str:
    return f"budget {budget.pk} ({budget.label})"


def save_budget(
    org: Organization,
    values: dict[str, Any],
    *,
    budget: Budget | None = None,
    actor: Any,
    channel: str,
    wake: bool = True,
) -> Budget:
    """Create or change a budget from validated ``values`` (budgets.forms), audited."""
    made = budget is None
    with transaction.atomic():
        if budget is None:
            budget = Budget(org=org)
            before = None
        else:
            budget = Budget.objects.select_for_update().get(pk=budget.pk, org=org)
            before = _snapshot(budget)
        for name in FIELDS:
            if name in values:
                setattr(budget, name, values[name])
        budget.save()
        after = _snapshot(budget)
        if made:
            record(
                org=org,
                action="budget.created",
                target=target(budget),
                actor=actor,
                channel=channel,
                detail=after,
            )
        elif before is not None and before != after:
            record(
                org=org,
                action="budget.changed",
                target=target(budget),
                actor=actor,
                channel=channel,
                detail={"before": before, "after": after},
            )
            BudgetAction.objects.create(
                budget=budget,
                period=month_period(timezone.now()) if budget.scope != Scope.ISSUE else "",
                kind=ActionKind.RAISED,
                note=f"{format_money(Decimal(before['amount_usd']), 'USD')} → "
                f"{format_money(budget.amount_usd, 'USD')}, {budget.get_enforcement_display()}",
                actor=actor if getattr(actor, "is_authenticated", False) else None,
                at=timezone.now(),
            )
    evaluate_org(org.pk)
    if wake:  # a block the change lifted frees queued sessions now
        dispatch_org_waiting(org.pk)
    return budget


def delete_budget(budget: Budget, *, actor: Any, channel: str) -> None:
    with transaction.atomic():
        record(
            org=budget.org,
            action="budget.deleted",
            target=target(budget),
            actor=actor,
            channel=channel,
            detail=_snapshot(budget),
        )
        org_id = budget.org_id
        budget.delete()
    dispatch_org_waiting(org_id)


def release(budget: Budget, *, period: str, actor: Any, channel: str) -> int:
    """Lift the budget's enforcement for ``period`` and resume the sessions it paused then.

    Audited; returns how many resumes were requested. The pass leaves a lifted period alone.
    """
    now = timezone.now()
    with transaction.atomic():
        state, _ = BudgetState.objects.get_or_create(
            budget=budget, period=period, defaults={"consumed_usd": Decimal(0)}
        )
        BudgetState.objects.filter(pk=state.pk).update(
            released_at=now,
            released_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        paused_ids = list(
            BudgetAction.objects.filter(
                budget=budget, period=period, kind=ActionKind.PAUSED, session__isnull=False
            ).values_list("session_id", flat=True)
        )
        BudgetAction.objects.create(
            budget=budget,
            period=period,
            kind=ActionKind.RELEASED,
            note=f"Enforcement lifted for {period}",
            actor=actor if getattr(actor, "is_authenticated", False) else None,
            at=now,
        )
        record(
            org=budget.org,
            action="budget.released",
            target=target(budget),
            actor=actor,
            channel=channel,
            detail={"period": period, "resuming": len(paused_ids)},
        )
    resumed = 0
    for session in Session.objects.filter(
        pk__in=paused_ids, state=SessionState.PAUSED
    ).select_related("org", "pool"):
        resumed += request_resume(session, actor, channel)
    dispatch_org_waiting(budget.org_id)
    return resumed


def set_issue_budget(issue: Issue, amount: Decimal, actor: Any, channel: str) -> None:
    """The dispatcher's ``issue.budget_usd``: the issue's own budget, created or changed
    (enforcement and thresholds from the org's default per-issue budget, else pause)."""
    existing = Budget.objects.filter(org_id=issue.org_id, scope=Scope.ISSUE, issue=issue).first()
    if existing is not None and existing.amount_usd == amount:
        return
    default = Budget.objects.filter(
        org_id=issue.org_id, scope=Scope.ISSUE, issue__isnull=True
    ).first()
    values: dict[str, Any] = {"amount_usd": amount}
    if existing is None:
        values.update(
            scope=Scope.ISSUE,
            issue=issue,
            thresholds=list(default.thresholds) if default else [50, 80, 100],
            enforcement=default.enforcement if default else Enforcement.PAUSE,
        )
    # Inside the create path's transaction: the session being created is dispatched next.
    save_budget(issue.org, values, budget=existing, actor=actor, channel=channel, wake=False)


def blocks(org_id: int, issue_id: int | None) -> admission.Blocks:
    """What the create path and dispatch ask: the budgets that block new sessions now."""
    scope: admission.Block | None = None
    pools: dict[int, admission.Block] = {}
    for state in active_blocks(org_id, issue_id, timezone.now()):
        budget = state.budget
        block = admission.Block(
            reason=(
                f"{_block_label(state)} is reached: {format_money(state.consumed_usd, 'USD')} "
                f"of {format_money(budget.amount_usd, 'USD')} ({state.period}, UTC). New "
                "sessions wait until an admin raises it or lifts the block."
            ),
            budget={
                "id": budget.pk,
                "scope": budget.scope,
                "pool": budget.pool.name if budget.pool else None,
                "issue": state.issue.key if state.issue else None,
                "period": state.period,
                "amount_usd": str(budget.amount_usd),
                "consumed_usd": str(state.consumed_usd.quantize(Decimal("0.01"))),
                "enforcement": budget.enforcement,
                "state": "enforced",
            },
        )
        if budget.scope == Scope.POOL and budget.pool_id is not None:
            pools[budget.pool_id] = block
        elif scope is None or budget.scope == Scope.ORG:
            scope = block
    return admission.Blocks(scope=scope, pools=pools)


def record_refusal(block: admission.Block, issue_key: str, channel: str) -> None:
    """A new session the block refused, on the budget's page (actions taken)."""
    budget_id = int(block.budget.get("id") or 0)
    if not Budget.objects.filter(pk=budget_id).exists():
        return
    BudgetAction.objects.create(
        budget_id=budget_id,
        period=str(block.budget.get("period", "")),
        kind=ActionKind.REFUSED,
        note=f"A new session{f' for {issue_key}' if issue_key else ''} via {channel}"[:300],
        at=timezone.now(),
    )


def _block_label(state: BudgetState) -> str:
    budget = state.budget
    if budget.scope == Scope.ORG:
        return "The org's monthly budget"
    if budget.scope == Scope.POOL:
        return f"The monthly budget of pool {budget.pool.name if budget.pool else '?'}"
    key = state.issue.key if state.issue else "?"
    return f"The budget of issue {key}"


def current_period(budget: Budget, issue_id: int | None = None) -> str:
    if budget.scope == Scope.ISSUE:
        return issue_period(issue_id or budget.issue_id or 0)
    return month_period(timezone.now())
