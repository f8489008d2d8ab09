"""The E2B pool form: typed fields for each config key, or a raw-JSON editor.

When the raw JSON is filled it is the whole config, and a typed field the admin changed must
say the same: a disagreement is a form error naming both values, never a silent winner.

Both paths end in the one model (``E2BProvider.validate_config`` → pools/config.py), so what
the form saves is exactly what the admin, the API and the jobs accept. Field names are the
config keys themselves, so an error from the schema lands on the field it names; errors from
the raw-JSON editor land on ``raw_config`` and start with the key they are about.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.db.models import Max

from pools import config as schema
from pools.env import config_keeping_stored
from pools.kinds import parse_provides
from pools.models import CapacityPool
from pools.providers import provider_class
from pools.providers.base import ConfigError
from rensei import inputs
from rensei.forms import style_widgets
from rensei.models import Organization

MAX_RAW_JSON = 64 * 1024
MAX_ORDER = 1_000_000
MAX_CAP = 100_000
# The typed fields a raw-JSON config replaces.
RAW_REPLACES = (
    "templateId",
    "launchRunnerInline",
    "timeoutSeconds",
    "onTimeout",
    "snapshotId",
    "envVars",
    *schema.POLICY_KEYS,
)


def parse_env_lines(text: str, stored: dict[str, str] | None = None) -> dict[str, str]:
    """``NAME=value`` lines (blank lines and ``#`` comments skipped) → a dict.

    A bare ``NAME`` line keeps the value ``stored`` holds for it: values are write-only, so
    the form lists the names alone. Raises ``ValueError`` naming the line. The name rule
    itself is the one env rule (rensei/inputs.py), as for sessions and exec.
    """
    stored = stored or {}
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep and name in stored:
            value = stored[name]
        elif not sep:
            raise ValueError(
                f"Line {number}: write NAME=value (no '=' in {stripped[:40]!r}, and no stored "
                "value to keep)."
            )
        try:
            inputs.env_value(inputs.env_name(name), value)
        except inputs.InputError as exc:
            raise ValueError(f"Line {number}: {exc.message}") from None
        if name in out:
            raise ValueError(f"Line {number}: {name} is set twice.")
        out[name] = value
    return out


def format_env_names(env: dict[str, str] | None) -> str:
    """The names alone, one a line, sorted (PostgreSQL's jsonb keeps no key order): a bare
    name keeps its stored value (never shown)."""
    return "\n".join(sorted(env or {}))


class RawJsonField(forms.CharField):
    """A textarea of JSON whose own errors (length, NUL) also say they are about the config."""

    def clean(self, value: Any) -> Any:
        try:
            return super().clean(value)
        except forms.ValidationError as exc:
            raise forms.ValidationError([f"config: {m}" for m in exc.messages]) from None


class E2BPoolForm(forms.ModelForm):
    """Create or edit an E2B pool of ``org``."""

    provider_kind = "e2b"

    # Bounds as widget attributes only: the config model says what is wrong with a value, in
    # the same words as for the raw JSON and the admin.
    templateId = forms.CharField(
        label="Template ID",
        required=False,
        widget=forms.TextInput(attrs={"maxlength": schema.MAX_ID_LENGTH}),
        help_text="Your custom template with the donmai binary (default: base, which has none).",
    )
    launchRunnerInline = forms.BooleanField(
        label="Launch runner inline",
        required=False,
        help_text="Run `donmai agent run` via execCommand after provision. Only if your "
        "template's start command cannot be set.",
    )
    timeoutSeconds = forms.IntegerField(
        label="Sandbox timeout (seconds)",
        required=False,
        widget=forms.NumberInput(attrs={"min": schema.TIMEOUT_MIN, "max": schema.TIMEOUT_MAX}),
        help_text="Passed to E2B on create. Default 3600.",
    )
    onTimeout = forms.ChoiceField(
        label="On timeout",
        choices=[("kill", "Kill the sandbox"), ("pause", "Pause it ($0 while paused)")],
        initial="kill",
        required=False,
    )
    snapshotId = forms.CharField(
        label="Snapshot ID",
        required=False,
        widget=forms.TextInput(attrs={"maxlength": schema.MAX_ID_LENGTH}),
        help_text="Optional: start from this snapshot instead of the template.",
    )
    envVars = forms.CharField(
        label="Environment variables",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One NAME=value per line. Values are encrypted and never shown again: a "
        "line with just the NAME keeps its stored value, NAME=value sets or replaces it, and "
        "removing the line removes the variable.",
    )
    # Lifecycle policies: empty is off (the config model holds the bounds and messages).
    idlePauseMinutes = forms.IntegerField(
        label="Idle auto-pause after (minutes)",
        required=False,
        widget=forms.NumberInput(attrs={"min": 1, "max": 1440}),
        help_text="Pause a running session whose CPU stayed under the idle threshold this long "
        "(1–1440). A paused sandbox costs $0; the pool page shows what this saved. Empty: off.",
    )
    idleCpuPercent = forms.FloatField(
        label="Idle threshold (CPU %)",
        required=False,
        widget=forms.NumberInput(attrs={"min": 0.1, "max": 100, "step": "any"}),
        help_text="Under this CPU % a session counts as idle (0.1–100). Empty: 2 %.",
    )
    pausedTerminateDays = forms.IntegerField(
        label="Terminate paused sessions after (days)",
        required=False,
        widget=forms.NumberInput(attrs={"min": 1, "max": 365}),
        help_text="Terminate a session that stayed paused this long (1–365). Empty: off.",
    )
    maxSessionHours = forms.IntegerField(
        label="Maximum session age (hours)",
        required=False,
        widget=forms.NumberInput(attrs={"min": 1, "max": 720}),
        help_text="Age counted from when the session first ran, paused time included "
        "(1–720). Empty: no limit.",
    )
    maxSessionAction = forms.ChoiceField(
        label="When a session is older than that",
        choices=[("terminate", "Terminate it (running or paused)"), ("pause", "Pause it")],
        initial="terminate",
        required=False,
    )
    runtime_provides_text = forms.CharField(
        label="Runtime provides override",
        required=False,
        max_length=2000,
        help_text="Extra kinds your template bakes in, e.g. toolchain:go toolchain:node "
        "(comma or space separated).",
    )
    raw_config = RawJsonField(
        label="Advanced: raw JSON config",
        required=False,
        max_length=MAX_RAW_JSON,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="When filled, this JSON object is the whole config. A field above that you "
        "changed must say the same, or the pool is not saved and both values are shown.",
    )

    # Explicit bounds: the same limits (and messages) on SQLite and PostgreSQL.
    order = forms.IntegerField(
        label="Order (priority, lowest first)",
        required=False,
        min_value=0,
        max_value=MAX_ORDER,
        help_text="Empty: after the existing pools.",
    )
    concurrency_cap = forms.IntegerField(
        label="Soft concurrency cap",
        required=False,
        min_value=1,
        max_value=MAX_CAP,
        help_text="Live sessions allowed at once: provisioning, running, pausing, resuming "
        "or terminating ones. Paused and queued sessions do not count, not even while being "
        "terminated (a paused sandbox costs nothing and holds no E2B concurrency slot). At "
        "the cap new sessions wait queued and resumes wait paused, oldest first, until a "
        "slot frees. Empty: no cap (E2B's tier limit still applies).",
    )

    class Meta:
        model = CapacityPool
        fields = ["name", "order", "concurrency_cap", "enabled"]

    field_order = [
        "name",
        "templateId",
        "launchRunnerInline",
        "timeoutSeconds",
        "onTimeout",
        "snapshotId",
        "envVars",
        *schema.POLICY_KEYS,
        "runtime_provides_text",
        "order",
        "concurrency_cap",
        "enabled",
        "raw_config",
    ]

    def __init__(self, *args: Any, org: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.org = org
        self.config: dict[str, Any] = {}
        self._original_order = self.instance.order if self.instance.pk else None
        style_widgets(self)
        pool: CapacityPool = self.instance
        if pool.pk:
            current = pool.config if isinstance(pool.config, dict) else {}
            for key in ("templateId", "launchRunnerInline", "timeoutSeconds", "onTimeout"):
                self.initial.setdefault(key, current.get(key, schema.KEYS[key].default))
            self.initial.setdefault("snapshotId", current.get("snapshotId", ""))
            self.initial.setdefault("envVars", format_env_names(current.get("envVars")))
            for key in schema.POLICY_KEYS:
                self.initial.setdefault(key, current.get(key))
            provides = pool.runtime_provides if isinstance(pool.runtime_provides, list) else []
            self.initial.setdefault("runtime_provides_text", " ".join(map(str, provides)))
        else:
            for key in ("templateId", "launchRunnerInline", "timeoutSeconds", "onTimeout"):
                self.initial.setdefault(key, schema.KEYS[key].default)

    # -- fields ------------------------------------------------------------------------

    def clean_name(self) -> str:
        name = str(self.cleaned_data.get("name") or "").strip()
        if not name:
            raise forms.ValidationError("Give the pool a name.")
        clash = CapacityPool.objects.filter(org=self.org, name__iexact=name)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError(f"This organisation already has a pool named {name!r}.")
        return name

    def clean_envVars(self) -> dict[str, str]:
        try:
            return parse_env_lines(self.cleaned_data.get("envVars") or "", self._stored_env())
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_runtime_provides_text(self) -> list[str]:
        try:
            return parse_provides(self.cleaned_data.get("runtime_provides_text") or "")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_raw_config(self) -> Any:
        text = (self.cleaned_data.get("raw_config") or "").strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"config: not valid JSON ({exc}).") from None
        except RecursionError:
            raise forms.ValidationError("config: the JSON is nested too deeply.") from None

    # -- the config --------------------------------------------------------------------

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        validate = provider_class(self.provider_kind).validate_config
        if self.data.get(self.add_prefix("raw_config"), "").strip():
            # The JSON is the whole config. Typed fields left as they were do not matter; one
            # the admin changed must agree with the JSON (checked below), so its own errors
            # stay.
            touched = [key for key in RAW_REPLACES if key in self.changed_data]
            for key in RAW_REPLACES:
                if key not in touched:
                    self.errors.pop(key, None)
                    cleaned.pop(key, None)
            if "raw_config" not in cleaned:
                return cleaned  # not JSON: the field already says so
            try:
                # ``••••`` (what the pool page shows) keeps a stored env value.
                raw = config_keeping_stored(cleaned["raw_config"], self._stored_config())
                self.config = validate(raw)
            except ConfigError as exc:
                for key, messages in exc.errors.items():
                    for message in messages:
                        self.add_error("raw_config", f"{key}: {message}")
                return cleaned
            if not any(key in self.errors for key in touched):
                self._check_agreement(self._typed_config(cleaned), touched)
            return cleaned
        # The model checks the typed fields that parsed (one that did not already says why),
        # so every bad value is reported at once.
        failed = [key for key in RAW_REPLACES if key in self.errors]
        try:
            config = validate(self._typed_config(cleaned))
        except ConfigError as exc:
            for key, messages in exc.errors.items():
                if key in failed:
                    continue
                field = key if key in self.fields else None
                for message in messages:
                    self.add_error(field, message if field else f"{key}: {message}")
            return cleaned
        if not failed:
            self.config = config
        return cleaned

    def _stored_config(self) -> dict[str, Any]:
        config = self.instance.config if self.instance.pk else None
        return config if isinstance(config, dict) else {}

    def _stored_env(self) -> dict[str, str]:
        env = self._stored_config().get("envVars")
        return env if isinstance(env, dict) else {}

    def _typed_config(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        """The config the typed fields describe (defaults for empty ones)."""
        raw: dict[str, Any] = {
            "templateId": (cleaned.get("templateId") or "").strip() or schema.DEFAULT_TEMPLATE,
            "launchRunnerInline": bool(cleaned.get("launchRunnerInline")),
            # 0 is a value (refused by the model), not "empty".
            "timeoutSeconds": schema.KEYS["timeoutSeconds"].default
            if cleaned.get("timeoutSeconds") is None
            else cleaned["timeoutSeconds"],
            "onTimeout": cleaned.get("onTimeout") or "kill",
        }
        if (cleaned.get("snapshotId") or "").strip():
            raw["snapshotId"] = cleaned["snapshotId"].strip()
        if cleaned.get("envVars"):
            raw["envVars"] = cleaned["envVars"]
        for key in schema.POLICY_KEYS:
            if cleaned.get(key) not in (None, ""):
                raw[key] = cleaned[key]
        if raw.get("maxSessionHours") is None:
            raw.pop("maxSessionAction", None)  # the action means nothing without the limit
        return raw

    def _check_agreement(self, typed: dict[str, Any], touched: list[str]) -> None:
        """A changed typed field that says something else than the raw JSON is an error on
        both, naming both values: the admin decides which one they meant."""
        for key in touched:
            from_json, from_field = self.config.get(key), typed.get(key)
            if from_json == from_field:
                continue
            label = self.fields[key].label
            if key == "envVars":
                # Values stay out of error messages, as they stay off read-only pages.
                said = _names(from_json), _names(from_field)
            else:
                said = _shown(from_json), _shown(from_field)
            self.add_error(
                key,
                f"The raw JSON config says {said[0]} but this field says {said[1]}: change one "
                "so they agree, or clear the raw JSON.",
            )
            self.add_error(
                "raw_config",
                f"{key}: the raw JSON says {said[0]} but the {label} field says {said[1]}.",
            )

    def save(self, commit: bool = True) -> CapacityPool:
        pool: CapacityPool = super().save(commit=False)
        pool.org = self.org
        pool.provider = self.provider_kind
        pool.config = self.config
        pool.runtime_provides = self.cleaned_data.get("runtime_provides_text") or []
        if self.cleaned_data.get("order") is None:
            if self._original_order is not None:
                pool.order = self._original_order
            else:
                top = CapacityPool.objects.filter(org=self.org).aggregate(m=Max("order"))["m"]
                pool.order = 0 if top is None else min(top + 1, MAX_ORDER)
        if commit:
            pool.save()
        return pool


def _shown(value: Any) -> str:
    return "nothing" if value is None else json.dumps(value, ensure_ascii=False)


def _names(env: Any) -> str:
    names = sorted(env) if isinstance(env, dict) else []
    return "variables " + ", ".join(names) if names else "no variables"


FORMS: dict[str, type[E2BPoolForm]] = {"e2b": E2BPoolForm}
