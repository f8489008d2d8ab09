"""Forms for Settings → Integrations and API tokens, and the Django admin's key field."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from rensei import providers
from rensei.credentials import MAX_SECRET_LENGTH, InvalidSecret, validate_secret
from rensei.models import Credential
from rensei.tokens import (
    DEFAULT_SCOPES,
    MAX_NAME_LENGTH,
    SCOPES,
    InvalidScopes,
    InvalidTokenName,
    validate_expiry,
    validate_name,
    validate_scopes,
)


def secret_widget() -> forms.PasswordInput:
    """Write-only: never pre-filled, never offered to autofill or spellcheck."""
    return forms.PasswordInput(
        render_value=False,
        attrs={
            "autocomplete": "off",
            "spellcheck": "false",
            "autocapitalize": "off",
            "maxlength": str(MAX_SECRET_LENGTH),
            "class": "form-control",
        },
    )


def style_widgets(form: forms.BaseForm) -> None:
    """Bootstrap's classes on every field's widget (a class a field sets itself is kept):
    ``form-check-input`` for checkboxes, ``form-select`` for choices, ``form-control`` else."""
    for field in form.fields.values():
        widget = field.widget
        if isinstance(widget, forms.CheckboxInput):
            widget.attrs.setdefault("class", "form-check-input")
        elif isinstance(widget, forms.Select):
            widget.attrs.setdefault("class", "form-select")
        else:
            widget.attrs.setdefault("class", "form-control")


class MarksInvalidFields:
    """Bootstrap's is-invalid class and aria-invalid on fields that have errors."""

    def is_valid(self) -> bool:
        valid: bool = super().is_valid()  # type: ignore[misc]
        form = cast(forms.BaseForm, self)
        for name in form.errors:
            if name in form.fields:
                attrs = form.fields[name].widget.attrs
                attrs["class"] = f"{attrs.get('class', '')} is-invalid".strip()
                attrs["aria-invalid"] = "true"
        return valid


class CredentialForm(MarksInvalidFields, forms.Form):
    # No max_length here: validate_secret gives the message, and Django's own would repeat
    # the entered length only, but one place decides what a valid key is.
    secret = forms.CharField(label="API key", strip=True, widget=secret_widget())

    def __init__(self, *args: Any, provider: str = "e2b", label: str = "E2B", **kwargs: Any):
        # One card (and one form) per provider on the page: keep their element ids apart.
        kwargs.setdefault("auto_id", f"id_{provider}_%s")
        super().__init__(*args, **kwargs)
        self.provider = provider
        self.fields["secret"].label = f"{label} API key"
        self.fields["secret"].error_messages["required"] = f"Enter the {label} API key."

    def clean_secret(self) -> str:
        try:
            return validate_secret(self.cleaned_data["secret"], self.provider)
        except InvalidSecret as exc:
            raise forms.ValidationError(str(exc)) from None


class ApiTokenForm(MarksInvalidFields, forms.Form):
    name = forms.CharField(
        label="Name",
        strip=True,
        widget=forms.TextInput(
            attrs={
                "class": "form-control",
                "maxlength": str(MAX_NAME_LENGTH),
                "placeholder": "e.g. dispatcher (production)",
            }
        ),
        error_messages={"required": "Give the token a name (what will use it)."},
    )

    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=[(scope, f"{scope}: {what}") for scope, what in SCOPES.items()],
        initial=list(DEFAULT_SCOPES),
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
        error_messages={"required": "Choose at least one scope."},
    )
    expires_on = forms.DateField(
        label="Last day (UTC, optional)",
        required=False,
        widget=forms.DateInput(attrs={"class": "form-control", "type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )

    def clean_name(self) -> str:
        try:
            return validate_name(self.cleaned_data["name"])
        except InvalidTokenName as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_scopes(self) -> list[str]:
        try:
            return validate_scopes(self.cleaned_data["scopes"])
        except InvalidScopes as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_expires_on(self) -> Any:
        try:
            return validate_expiry(self.cleaned_data.get("expires_on"))
        except InvalidScopes as exc:
            raise forms.ValidationError(str(exc)) from None


class CredentialAdminForm(forms.ModelForm):
    """Admin form: the key is a write-only field saved through ``set_credential``."""

    new_secret = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=secret_widget(),
        help_text="Write-only. Leave empty to keep the current key.",
    )

    class Meta:
        model = Credential
        fields = ["org", "provider"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "provider" in self.fields:
            self.fields["provider"] = forms.ChoiceField(choices=providers.choices())
        if self.instance.pk is None:
            self.fields["new_secret"].required = True
            self.fields["new_secret"].help_text = "Write-only: it is never shown again."

    def clean_new_secret(self) -> str:
        raw = self.cleaned_data.get("new_secret", "")
        if not raw and self.instance.pk is not None:
            return ""
        provider = self.cleaned_data.get("provider") or self.instance.provider
        try:
            return validate_secret(raw, provider)
        except InvalidSecret as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        org, provider = data.get("org"), data.get("provider")
        if (
            self.instance.pk is None
            and org is not None
            and Credential.objects.filter(org=org, provider=provider).exists()
        ):
            raise forms.ValidationError(
                "This organisation already has a key for this provider: change that one."
            )
        return data

    def _post_clean(self) -> None:
        # The model's secret_encrypted/last_four are filled by set_credential on save, so the
        # model-level validation of this half-built instance would only report them missing.
        pass
