"""Filter forms for the reports (read from the query string) and the admin's forms.

Report filters never fail the page: each bad value is dropped with a message saying what
was shown instead (``ReportFilters.from_request``). The CSV export, where a silent default
would be misleading, answers 400 with the same messages instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from billing.analytics import SORTS, CostFilter
from billing.models import RateCard
from billing.periods import DEFAULT_PRESET, MAX_DAYS, PRESETS, Period, period_for
from pools.models import CapacityPool
from pools.providers import provider_choices
from rensei.models import Organization

REVERSALS = {"": "Include reversals", "only": "Reversals only", "exclude": "Exclude reversals"}


# Dates are ISO everywhere (YYYY-MM-DD), typed as text: a browser's date picker shows the
# locale's format instead (MM/DD/YYYY in en-US), beside ISO dates on every other page.
ISO_DATE = {"invalid": "write the date as YYYY-MM-DD, e.g. 2026-03-31"}


class ReportFilterForm(forms.Form):
    range = forms.ChoiceField(
        label="Date range (UTC)", choices=list(PRESETS.items()), required=False
    )
    start = forms.DateField(
        label="From (UTC)", required=False, input_formats=["%Y-%m-%d"], error_messages=ISO_DATE
    )
    end = forms.DateField(
        label="To (UTC, inclusive)",
        required=False,
        input_formats=["%Y-%m-%d"],
        error_messages=ISO_DATE,
    )
    pool = forms.ModelChoiceField(
        label="Pool",
        queryset=CapacityPool.objects.none(),
        required=False,
        empty_label="All pools",
        error_messages={"invalid_choice": "that pool is not one of this organisation's pools"},
    )
    provider = forms.ChoiceField(label="Provider", required=False)

    def __init__(self, *args: Any, org: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["pool"].queryset = CapacityPool.objects.filter(org=org).order_by("name")  # type: ignore[attr-defined]
        self.fields["provider"].choices = [("", "All providers"), *provider_choices()]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("range") == "custom":
            start, end = data.get("start"), data.get("end")
            if start is None or end is None:
                if "start" not in self.errors and "end" not in self.errors:
                    self.add_error("range", "custom dates need both a start and an end date")
            elif start > end:
                self.add_error("end", "the end date is before the start date")
            elif (end - start).days + 1 > MAX_DAYS:
                self.add_error("end", f"a custom range may span at most {MAX_DAYS} days")
        return data


class CostPerIssueForm(ReportFilterForm):
    sort = forms.ChoiceField(
        choices=[(k, label) for k, (label, _) in SORTS.items()], required=False
    )
    dir = forms.ChoiceField(choices=[("asc", "ascending"), ("desc", "descending")], required=False)


class LedgerFilterForm(ReportFilterForm):
    issue = forms.CharField(label="Issue key", required=False, max_length=64)
    session = forms.IntegerField(label="Session id", required=False, min_value=1, max_value=2**62)
    reversals = forms.ChoiceField(
        label="Reversals", choices=list(REVERSALS.items()), required=False
    )


@dataclass
class ReportFilters:
    """Validated filters with defaults filled in, plus what was wrong with the input."""

    period: Period
    pool: CapacityPool | None = None
    provider: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def cost_filter(self, org: Organization) -> CostFilter:
        return CostFilter(
            org_id=org.pk,
            period=self.period,
            pool_id=self.pool.pk if self.pool else None,
            provider=self.provider or None,
        )


def today_utc() -> date:
    return timezone.now().astimezone(UTC).date()


def read_filters(form: ReportFilterForm) -> ReportFilters:
    """Apply a bound filter form: valid values are used, invalid ones become messages."""
    form.is_valid()
    data = form.cleaned_data
    problems = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else "Filter"
        for error in errors:
            # Django's own messages end in a full stop; ours do not. One stop either way.
            problems.append(f"{label}: {str(error).rstrip('.')}. Showing the default instead.")
    preset = data.get("range") or DEFAULT_PRESET
    if "range" in form.errors or "start" in form.errors or "end" in form.errors:
        preset = DEFAULT_PRESET
    today = today_utc()
    if preset == "custom":
        period = period_for(preset, today, data.get("start"), data.get("end"))
    else:
        period = period_for(preset, today)
    values = {k: v for k, v in data.items() if v not in (None, "")}
    return ReportFilters(
        period=period,
        pool=data.get("pool"),
        provider=data.get("provider") or "",
        values=values,
        problems=problems,
    )


class ReverseEntryForm(forms.Form):
    reason = forms.CharField(
        label="Reason for the reversal",
        widget=forms.Textarea({"rows": 3}),
        max_length=2000,
        help_text="Recorded on the reversing row and in the audit log.",
    )

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


class RateCardForm(forms.ModelForm):
    """Staff add rate cards in the admin. A card starts at a future UTC midnight, so it
    never reprices time already run and every daily ledger row has exactly one rate."""

    class Meta:
        model = RateCard
        fields = [
            "provider",
            "effective_from",
            "vcpu_second_price",
            "gib_second_price",
            "currency",
            "basis",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["provider"] = forms.ChoiceField(choices=provider_choices())
        self.fields["currency"] = forms.ChoiceField(
            choices=[("USD", "USD")],
            help_text="Reports add amounts across rate cards, so every card is in USD.",
        )

    def clean_effective_from(self) -> datetime:
        value: datetime = self.cleaned_data["effective_from"]
        utc = value.astimezone(UTC)
        if utc.timetz().replace(tzinfo=None) != time.min:
            raise forms.ValidationError(
                "A rate starts at a UTC midnight (00:00:00 UTC): the daily accrual splits "
                "running sandboxes there, so each day is billed at one rate."
            )
        if utc <= timezone.now():
            raise forms.ValidationError(
                "A new rate starts in the future; past usage keeps the rate it was billed at."
            )
        return utc

    def _clean_price(self, name: str) -> Any:
        value = self.cleaned_data[name]
        if value is not None and value < 0:
            raise forms.ValidationError("A price cannot be negative.")
        return value

    def clean_vcpu_second_price(self) -> Any:
        return self._clean_price("vcpu_second_price")

    def clean_gib_second_price(self) -> Any:
        return self._clean_price("gib_second_price")


def tomorrow_midnight() -> datetime:
    return datetime.combine(today_utc() + timedelta(days=1), time.min, tzinfo=UTC)
