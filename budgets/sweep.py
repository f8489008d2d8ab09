"""The budgets' pass (beat, every minute): alerts, and enforcement where a budget asks for it.

    evaluate_org(org_id, now=None) -> dict[str, int]
    evaluate_all(now=None) -> dict[str, int]

For each budget of an org (the issue default once per issue it covers):

- every threshold the consumption has reached fires its alert once (``budgets.alerts``);
- ``block`` and ``pause`` budgets that reached their amount are enforced for the period: a
  ``BudgetState`` row with ``enforced_at``, one ``budget.enforced`` event and an action row,
  all in one transaction. ``block`` refuses new sessions in the scope from then on
  (``budgets.admission``); ``pause`` asks every running session in the scope to pause,
  through the same request the pause button makes (channel ``job``, the reason on the
  timeline and in the audit row). An issue's ``pause`` budget acts before the breach: as soon
  as the issue's projection (spend + its running sandboxes until their timeout) reaches it;
- an enforced budget that no longer reaches its amount (an admin raised it) stops
  enforcing; one an admin lifted (``release``) stays lifted for the period.

Two passes at once act once: the alert and the state rows are unique per budget and period,
and the pauses are conditional state moves (the loser's finds the session pausing already).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.money import format_money
from budgets import alerts
from budgets.consumption import cents, cumulative, daily_billed, month_period
from budgets.figures import Figure, load_budgets, org_figures
from budgets.models import ActionKind, Budget, BudgetAction, BudgetAlert, BudgetState, Scope
from events import outbox, types
from rensei.models import Channel
from sessions.actions import request_pause
from sessions.models import Session, SessionState

log = logging.getLogger(__name__)


def evaluate_all(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    totals = {"orgs": 0, "alerts": 0, "enforced": 0, "paused": 0}
    org_ids = Budget.objects.order_by().values_list("org_id", flat=True).distinct()
    for org_id in sorted(set(org_ids)):
        done = evaluate_org(org_id, now)
        totals["orgs"] += 1
        for key in ("alerts", "enforced", "paused"):
            totals[key] += done[key]
    return totals


def evaluate_org(org_id: int, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    done = {"alerts": 0, "enforced": 0, "paused": 0}
    budgets = load_budgets(org_id)
    if not budgets:
        return done
    figures = org_figures(org_id, now, budgets)
    fired = set(
        BudgetAlert.objects.filter(
            budget__org_id=org_id, period__in={f.period for f in figures}
        ).values_list("budget_id", "period", "threshold")
    )
    _snapshot(org_id, figures, now)
    for figure in figures:
        for threshold in figure.crossed:
            if (figure.budget.pk, figure.period, threshold) in fired:
                continue
            done["alerts"] += alerts.fire(figure, threshold, now) is not None
        if figure.should_enforce and not figure.released:
            if not figure.enforcing:
                done["enforced"] += enforce(figure, now)
            if figure.budget.enforcement == "pause":
                done["paused"] += pause_scope(figure, now)
        elif figure.enforcing and not figure.should_enforce:
            _stop_enforcing(figure)
    return done


def _snapshot(org_id: int, figures: list[Figure], now: datetime) -> None:
    """Org and pool budgets keep this pass's figures for the dashboard panel."""
    monthly = [f for f in figures if f.budget.scope in (Scope.ORG, Scope.POOL)]
    if not monthly:
        return
    by_pool = daily_billed(org_id, now)
    for figure in monthly:
        budget = figure.budget
        if budget.scope == Scope.ORG:
            days: dict[Any, Any] = {}
            for series in by_pool.values():
                for day, amount in series.items():
                    days[day] = days.get(day, 0) + amount
        else:
            days = by_pool.get(budget.pool_id, {})
        budget.snapshot = {
            "period": figure.period,
            "consumed": str(figure.consumed),
            "forecast": str(cents(figure.forecast)) if figure.forecast is not None else None,
            "at": now.isoformat(),
            "daily": cumulative(days, now, figure.consumed),
        }
        Budget.objects.filter(pk=budget.pk).update(snapshot=budget.snapshot)


def _describe(figure: Figure) -> str:
    return (
        f"{figure.label}: {format_money(figure.consumed, 'USD')} of "
        f"{format_money(figure.amount, 'USD')} ({figure.period}, UTC)"
    )


def enforce(figure: Figure, now: datetime) -> int:
    """Start enforcing ``figure``'s budget for its period; 1 if this call did."""
    budget = figure.budget
    try:
        with transaction.atomic():
            state, _ = BudgetState.objects.get_or_create(
                budget=budget,
                period=figure.period,
                defaults={"issue_id": figure.issue_id, "consumed_usd": figure.consumed},
            )
            won = BudgetState.objects.filter(
                pk=state.pk, enforced_at__isnull=True, released_at__isnull=True
            ).update(enforced_at=now, consumed_usd=figure.consumed)
            if not won:
                return 0
            state.enforced_at = now
            figure.state = state
            why = "projection reaches the budget" if not figure.reached else "budget reached"
            BudgetAction.objects.create(
                budget=budget,
                period=figure.period,
                kind=ActionKind.ENFORCED,
                note=f"{budget.get_enforcement_display()}: {why}; {_describe(figure)}"[:300],
                at=now,
            )
            outbox.emit(
                budget.org_id,
                types.BUDGET_ENFORCED,
                {"budget": figure.as_json(), "enforcement": budget.enforcement},
            )
    except IntegrityError:  # another pass made the state row first; it enforces
        return 0
    return 1


def _stop_enforcing(figure: Figure) -> None:
    if figure.state is not None:
        BudgetState.objects.filter(pk=figure.state.pk, released_at__isnull=True).update(
            enforced_at=None
        )
        figure.state.enforced_at = None


def scope_sessions(figure: Figure) -> Any:
    """The running sessions a budget covers."""
    budget = figure.budget
    sessions = Session.objects.filter(org_id=budget.org_id, state=SessionState.RUNNING)
    if budget.scope == Scope.POOL:
        sessions = sessions.filter(pool_id=budget.pool_id)
    elif budget.scope == Scope.ISSUE:
        sessions = sessions.filter(issue_id=figure.issue_id or 0)
    return sessions.select_related("org", "pool").order_by("pk")


def pause_scope(figure: Figure, now: datetime) -> int:
    """Ask every running session in the scope to pause; how many requests won."""
    reason = f"paused by its budget: {_describe(figure)}"[:300]
    won = 0
    for session in scope_sessions(figure):
        with transaction.atomic():
            if not request_pause(session, None, Channel.JOB, reason=reason):
                continue
            BudgetAction.objects.create(
                budget=figure.budget,
                period=figure.period,
                kind=ActionKind.PAUSED,
                session=session,
                note=reason,
                at=now,
            )
        won += 1
    return won


def active_blocks(org_id: int, issue_id: int | None, now: datetime) -> list[BudgetState]:
    """The org's ``block`` budgets enforced now that cover a new session: the org's and the
    pools' for this month, the issue's (its own or the default's). One query."""
    scope = Q(period=month_period(now), budget__scope__in=[Scope.ORG, Scope.POOL])
    if issue_id:
        scope |= Q(budget__scope=Scope.ISSUE, issue_id=issue_id)
    return list(
        BudgetState.objects.filter(
            scope,
            budget__org_id=org_id,
            budget__enforcement="block",
            enforced_at__isnull=False,
            released_at__isnull=True,
        ).select_related("budget", "budget__pool", "issue")
    )
