"""The budget form: one for every scope, checked before anything is saved.

Amounts use the one USD rule (``sessions.admission.usd_amount``, the API's too): above $0,
at most $1,000,000,000, whole cents. Thresholds are whole percentages from 1 to 1000,
comma-separated, at most ten of them.
"""

from __future__ import annotations

from typing import Any

from django import forms

from budgets.models import MAX_THRESHOLD, MIN_THRESHOLD, Budget, Enforcement, Scope
from pools.models import CapacityPool
from rensei.forms import style_widgets
from rensei.inputs import InputError
from rensei.models import Organization
from sessions.admission import USD_HELP, usd_amount
from sessions.models import Issue

MAX_THRESHOLDS = 10


def parse_thresholds(text: str) -> list[int]:
    parts = [p.strip().rstrip("%").strip() for p in (text or "").split(",") if p.strip()]
    if not parts:
        raise forms.ValidationError("Enter at least one threshold, e.g. 50, 80, 100.")
    if len(parts) > MAX_THRESHOLDS:
        raise forms.ValidationError(f"At most {MAX_THRESHOLDS} thresholds.")
    values = set()
    for part in parts:
        if not part.isdigit() or not part.isascii():
            raise forms.ValidationError(
                f"“{part[:20]}” is not a whole percentage: write e.g. 50, 80, 100."
            )
        value = int(part)
        if not MIN_THRESHOLD <= value <= MAX_THRESHOLD:
            raise forms.ValidationError(
                f"Thresholds are between {MIN_THRESHOLD} % and {MAX_THRESHOLD} % ({value} is not)."
            )
        values.add(value)
    return sorted(values)


class BudgetForm(forms.Form):
    scope = forms.ChoiceField(label="Applies to", choices=Scope.choices)
    pool = forms.ModelChoiceField(
        label="Pool (for a pool budget)",
        queryset=CapacityPool.objects.none(),
        required=False,
        empty_label="—",
        error_messages={"invalid_choice": "That pool is not one of this organisation's pools."},
    )
    issue_key = forms.CharField(
        label="Issue key (for one issue; empty = the default for every issue)",
        required=False,
        max_length=64,
    )
    amount_usd = forms.CharField(
        label="Amount (USD)",
        max_length=30,
        help_text=USD_HELP,
        error_messages={"required": "Enter the amount in US dollars, e.g. 250.00."},
    )
    thresholds = forms.CharField(
        label="Alert thresholds (% of the amount)",
        initial="50, 80, 100",
        max_length=100,
        error_messages={"required": "Enter at least one threshold, e.g. 50, 80, 100."},
        help_text="Whole percentages from 1 to 1000, comma-separated. Each one alerts once "
        "per period: a banner for admins and finance, and an email.",
    )
    enforcement = forms.ChoiceField(
        label="When the amount is reached",
        choices=Enforcement.choices,
        help_text="Block: new sessions in the scope are refused and queued ones wait. "
        "Pause: running sessions in the scope are paused (an issue's are paused before its "
        "projection reaches the amount).",
    )

    def __init__(
        self, *args: Any, org: Organization, budget: Budget | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.org = org
        self.budget = budget
        self.fields["pool"].queryset = CapacityPool.objects.filter(org=org).order_by("name")  # type: ignore[attr-defined]
        style_widgets(self)
        if budget is not None:
            # The scope and target of a budget stay as they are; the amount, thresholds
            # and enforcement change.
            for name in ("scope", "pool", "issue_key"):
                self.fields[name].disabled = True
                self.fields[name].required = False
            self.initial.update(
                scope=budget.scope,
                pool=budget.pool_id,
                issue_key=budget.issue.key if budget.issue else "",
                amount_usd=f"{budget.amount_usd}",
                thresholds=", ".join(str(t) for t in budget.thresholds),
                enforcement=budget.enforcement,
            )

    def clean_amount_usd(self) -> Any:
        try:
            return usd_amount(self.cleaned_data.get("amount_usd", ""))
        except InputError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_thresholds(self) -> list[int]:
        return parse_thresholds(self.cleaned_data.get("thresholds", ""))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.budget is not None:
            return data
        scope = data.get("scope")
        pool = data.get("pool")
        key = (data.get("issue_key") or "").strip()
        data["issue"] = None
        if scope == Scope.POOL:
            if pool is None:
                self.add_error("pool", "Choose the pool this budget is for.")
            elif Budget.objects.filter(org=self.org, scope=Scope.POOL, pool=pool).exists():
                self.add_error("pool", f"Pool {pool.name} has a budget already: edit that one.")
        else:
            data["pool"] = None
        if scope == Scope.ORG and Budget.objects.filter(org=self.org, scope=Scope.ORG).exists():
            self.add_error("scope", "The organisation has a monthly budget already: edit it.")
        if scope == Scope.ISSUE:
            if key:
                issue = Issue.objects.filter(org=self.org, key=key).first()
                if issue is None:
                    self.add_error("issue_key", f"There is no issue {key[:64]} in this org.")
                elif Budget.objects.filter(org=self.org, scope=Scope.ISSUE, issue=issue).exists():
                    self.add_error("issue_key", f"{key} has a budget already: edit that one.")
                data["issue"] = issue
            elif Budget.objects.filter(
                org=self.org, scope=Scope.ISSUE, issue__isnull=True
            ).exists():
                self.add_error("issue_key", "The default per-issue budget exists already: edit it.")
        return data

    def values(self) -> dict[str, Any]:
        data = self.cleaned_data
        values = {name: data[name] for name in ("amount_usd", "thresholds", "enforcement")}
        if self.budget is None:
            values.update(scope=data["scope"], pool=data.get("pool"), issue=data.get("issue"))
        return values
