"""The Settings → Webhooks forms. The rules are events.endpoints' (the API uses them too)."""

from __future__ import annotations

from typing import Any

from django import forms

from events.egress import MAX_URL_LENGTH
from events.endpoints import MAX_DESCRIPTION, InvalidEndpoint, clean
from events.types import EVENT_TYPES
from rensei.forms import MarksInvalidFields


class WebhookForm(MarksInvalidFields, forms.Form):
    url = forms.CharField(
        label="URL",
        strip=True,
        widget=forms.URLInput(
            attrs={
                "class": "form-control",
                "maxlength": str(MAX_URL_LENGTH),
                "placeholder": "https://dispatcher.example.com/rensei/events",
                "autocomplete": "off",
            }
        ),
        error_messages={"required": "Give the URL that receives the events."},
    )
    description = forms.CharField(
        label="Description (optional)",
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"class": "form-control", "maxlength": str(MAX_DESCRIPTION)}),
    )
    event_types = forms.MultipleChoiceField(
        label="Event types",
        required=False,
        choices=[(name, f"{name}: {what}") for name, what in EVENT_TYPES.items()],
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
        help_text="None ticked: every type, including types added later.",
        error_messages={"invalid_choice": "Unknown event type %(value)s."},
    )
    enabled = forms.BooleanField(
        label="Enabled",
        required=False,
        initial=True,
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            data.update(
                clean(data.get("url", ""), data.get("event_types", []), data.get("description", ""))
            )
        except InvalidEndpoint as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


class RotateForm(MarksInvalidFields, forms.Form):
    overlap_hours = forms.IntegerField(
        label="Old secret keeps signing for (hours)",
        min_value=0,
        max_value=168,
        initial=24,
        widget=forms.NumberInput(attrs={"class": "form-control", "min": "0", "max": "168"}),
        error_messages={
            "required": "Say how long the old secret keeps signing (0 to 168 hours).",
            "invalid": "Enter a whole number of hours (0 to 168).",
            "min_value": "The overlap is 0 to 168 hours.",
            "max_value": "The overlap is 0 to 168 hours.",
        },
    )
