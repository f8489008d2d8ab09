"""Each budget of an org with its figures for one moment: what the pages show and the sweep
acts on.

    org_figures(org_id, now) -> list[Figure]     # five queries, however many budgets

An org or pool budget is one figure for the month. The org's default per-issue budget gives
one figure per issue it covers that has spent something this evaluation can see (its live
issues and any issue already alerted on); an issue's own budget gives one figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from budgets.consumption import (
    ZERO,
    OrgSpend,
    issue_period,
    month_period,
    org_spend,
)
from budgets.models import Budget, BudgetState, Enforcement, Scope
from sessions.models import Issue


@dataclass
class Figure:
    budget: Budget
    period: str
    consumed: Decimal
    forecast: Decimal | None  # org and pool budgets: month-end forecast
    projection: Decimal | None  # issue budgets: if the running sandboxes run to their timeout
    issue_id: int | None = None
    issue_key: str = ""
    state: BudgetState | None = None

    @property
    def period_label(self) -> str:
        return "whole life" if self.period.startswith("issue-") else f"{self.period} (UTC)"

    @property
    def amount(self) -> Decimal:
        return self.budget.amount_usd

    @property
    def percent(self) -> Decimal:
        return (self.consumed / self.amount * 100).quantize(Decimal("0.1"))

    @property
    def crossed(self) -> list[int]:
        return [t for t in self.budget.thresholds if self.consumed * 100 >= self.amount * t]

    @property
    def reached(self) -> bool:
        return self.consumed >= self.amount

    @property
    def breach_ahead(self) -> bool:
        """The issue guard's test: the projection reaches the amount."""
        return self.projection is not None and self.projection >= self.amount

    @property
    def should_enforce(self) -> bool:
        if self.budget.enforcement == Enforcement.NOTIFY:
            return False
        if self.budget.scope == Scope.ISSUE and self.budget.enforcement == Enforcement.PAUSE:
            return self.reached or self.breach_ahead
        return self.reached

    @property
    def enforcing(self) -> bool:
        return self.state is not None and self.state.enforcing

    @property
    def released(self) -> bool:
        return self.state is not None and self.state.released_at is not None

    @property
    def status(self) -> str:
        if self.released:
            return "lifted"
        if self.enforcing:
            return "enforced"
        if self.reached:
            return "reached"
        if self.crossed:
            return "warning"
        return "ok"

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.budget.pk,
            "scope": self.budget.scope,
            "label": self.label,
            "period": self.period,
            "amount_usd": str(self.amount),
            "consumed_usd": str(self.consumed),
            "enforcement": self.budget.enforcement,
            "state": self.status,
        }

    @property
    def label(self) -> str:
        if self.budget.scope == Scope.ISSUE and self.budget.issue_id is None:
            return f"Issue {self.issue_key} (default budget)"
        return self.budget.label


def load_budgets(org_id: int) -> list[Budget]:
    return list(
        Budget.objects.filter(org_id=org_id).select_related("pool", "issue").order_by("scope", "pk")
    )


def figures_for(
    budgets: list[Budget], spend: OrgSpend, states: dict[tuple[int, str], BudgetState]
) -> list[Figure]:
    now = spend.now
    month = month_period(now)
    out: list[Figure] = []
    own = {b.issue_id for b in budgets if b.scope == Scope.ISSUE and b.issue_id}
    keys = _issue_keys(budgets)
    for budget in budgets:
        if budget.scope == Scope.ORG:
            out.append(Figure(budget, month, spend.month(), spend.forecast(), None))
        elif budget.scope == Scope.POOL:
            pid = budget.pool_id
            out.append(Figure(budget, month, spend.month(pid), spend.forecast(pid), None))
        elif budget.issue_id is not None:
            iid = budget.issue_id
            out.append(
                Figure(budget, issue_period(iid), spend.issue(iid), spend.projection(iid), None)
            )
            out[-1].issue_id, out[-1].issue_key = iid, budget.issue.key if budget.issue else ""
        else:  # the default: every issue it can see spending, without its own budget
            covered = sorted(
                {r.issue_id for r in spend.runs if r.issue_id} | set(spend.issue_billed)
            )
            for iid in covered:
                if iid in own:
                    continue
                out.append(
                    Figure(budget, issue_period(iid), spend.issue(iid), None, spend.projection(iid))
                )
                out[-1].issue_id, out[-1].issue_key = iid, keys.get(iid, "")
    for figure in out:
        if figure.projection is None and figure.budget.scope == Scope.ISSUE:
            figure.projection = spend.projection(figure.issue_id or 0)
        if figure.budget.scope == Scope.ISSUE:
            figure.forecast = None
        figure.state = states.get((figure.budget.pk, figure.period))
    return out


def _issue_keys(budgets: list[Budget]) -> dict[int, str]:
    return {b.issue_id: b.issue.key for b in budgets if b.issue_id and b.issue}


def org_figures(org_id: int, now: datetime, budgets: list[Budget] | None = None) -> list[Figure]:
    """Every budget's figures (the issue default's per covered issue), in five queries."""
    from_db = budgets if budgets is not None else load_budgets(org_id)
    if not from_db:
        return []
    issue_ids = [b.issue_id for b in from_db if b.issue_id]
    spend = org_spend(org_id, now, issue_ids)
    month = month_period(now)
    states = {
        (s.budget_id, s.period): s
        for s in BudgetState.objects.filter(budget__org_id=org_id).filter(
            period__in=[month, *{f"issue-{r.issue_id}" for r in spend.runs if r.issue_id}]
            + [f"issue-{i}" for i in issue_ids]
        )
    }
    figures = figures_for(from_db, spend, states)
    missing = [f for f in figures if not f.issue_key and f.issue_id]
    if missing:
        # Keys of issues the default covers; one query, only when one is shown.
        keys = dict(
            Issue.objects.filter(pk__in={f.issue_id for f in missing}).values_list("pk", "key")
        )
        for f in missing:
            f.issue_key = keys.get(f.issue_id or 0, "")
    return figures


def total_for(figures: list[Figure], scope: str) -> Decimal:
    return sum((f.consumed for f in figures if f.budget.scope == scope), ZERO)
