"""Staff views of billing: rate cards (add future ones) and the ledger (read-only, reverse).

The ledger admin has no add, change or delete permission for anyone, superusers included:
rows are born in ``emit_sandbox_cost_event`` and corrected by the "Reverse entry" action,
which asks for a reason on a confirmation page and writes the negative row plus an audit
event.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from billing.forms import RateCardForm, ReverseEntryForm, tomorrow_midnight
from billing.ledger import AlreadyReversed, ReversalNotReversible, reverse_cost_event
from billing.models import CostEvent, RateCard
from billing.money import format_money


@admin.register(RateCard)
class RateCardAdmin(admin.ModelAdmin):
    form = RateCardForm
    list_display = [
        "provider",
        "effective_from",
        "vcpu_second_price",
        "gib_second_price",
        "currency",
        "basis",
    ]
    list_filter = ["provider"]
    ordering = ["provider", "-effective_from"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"effective_from": tomorrow_midnight(), "currency": "USD"}

    def _in_effect(self, obj: RateCard | None) -> bool:
        return obj is not None and obj.effective_from <= timezone.now()

    # A card in effect has priced usage (or may have): it is never edited or deleted.
    # A future card can still be corrected or withdrawn before it starts.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not self._in_effect(obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and not self._in_effect(obj)


class ReversalFilter(admin.SimpleListFilter):
    title = "reversal"
    parameter_name = "reversal"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("only", "Reversals only"),
            ("exclude", "Exclude reversals"),
            ("reversed", "Reversed entries"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "only":
            return queryset.filter(reverses__isnull=False)
        if self.value() == "exclude":
            return queryset.filter(reverses__isnull=True)
        if self.value() == "reversed":
            return queryset.filter(reversed_by__isnull=False)
        return queryset


@admin.register(CostEvent)
class CostEventAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "occurred_at",
        # Amount early: the long idempotency key pushes later columns off a 1366 px screen.
        "amount_shown",
        "quantity_seconds",
        "org",
        "issue",
        "session",
        "pool",
        "idempotency_key",
        "reverses",
    ]
    list_filter = ["org", "provider", ReversalFilter]
    list_select_related = ["org", "issue", "session", "pool", "reverses"]
    search_fields = ["idempotency_key", "issue__key", "=session__id"]
    date_hierarchy = "occurred_at"
    actions = ["reverse_entries"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Amount", ordering="amount")
    def amount_shown(self, obj: CostEvent) -> str:
        # The pages' rule (a sub-cent cost never reads $0.00), the stored figure on hover.
        return format_html(
            '<span title="{} {}">{}</span>',
            f"{obj.amount:f}",
            obj.currency,
            format_money(obj.amount, obj.currency),
        )

    def has_reverse_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.reverse_costevent")

    @admin.action(description="Reverse entry", permissions=["reverse"])
    def reverse_entries(
        self, request: HttpRequest, queryset: QuerySet[CostEvent]
    ) -> HttpResponse | None:
        """Ask for a reason (confirmation page), then write one reversing row per entry."""
        form = ReverseEntryForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            reversed_ids, refused, reversals = [], [], []
            for event in queryset.order_by("pk"):
                try:
                    reverse_cost_event(
                        event, reason=form.cleaned_data["reason"], actor=request.user
                    )
                    reversed_ids.append(event.pk)
                except ReversalNotReversible:
                    reversals.append(event.pk)
                except AlreadyReversed:
                    refused.append(event.pk)
            if reversed_ids:
                noun = "entry" if len(reversed_ids) == 1 else "entries"
                self.message_user(
                    request,
                    f"Reversed {len(reversed_ids)} ledger {noun}: "
                    + ", ".join(f"#{pk}" for pk in reversed_ids),
                    messages.SUCCESS,
                )
            if refused:
                self.message_user(
                    request,
                    "Already reversed, refused: "
                    + ", ".join(f"#{pk}" for pk in refused)
                    + ". An entry is reversed at most once.",
                    messages.ERROR,
                )
            if reversals:
                self.message_user(
                    request,
                    "Reversals are never reversed, refused: "
                    + ", ".join(f"#{pk}" for pk in reversals)
                    + ".",
                    messages.ERROR,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Reverse ledger entries",
            "opts": self.model._meta,
            "entries": queryset.select_related("org", "issue", "reversed_by").order_by("pk"),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        status = 400 if form.is_bound else 200
        return TemplateResponse(
            request, "billing/admin_reverse_confirm.html", context, status=status
        )
