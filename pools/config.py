"""The E2B pool config: one strict Pydantic model every entry point validates with.

The pool form (typed fields and the raw-JSON editor), the Django admin and the jobs all end
in ``validate_e2b_config`` (through ``E2BProvider.validate_config``), which is
``E2BConfig.model_validate``: a config that was saved anywhere re-validates everywhere.
Unknown keys are refused (``extra="forbid"``) and types are strict on purpose: JSON ``true``
is not an integer and ``"3600"`` is not a number, because E2B would reject or misread them
later, in a Celery job, far from the admin who typed them. ``envVars`` follows the one env
rule (rensei/inputs.py) that sessions and exec use too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from rensei.inputs import InputError, env_map, rule


class ConfigError(ValueError):
    """A pool config is invalid. ``errors`` maps each field name to its messages.

    Defined with the config (providers raise it from ``validate_config``), so the config
    imports nothing from the providers that use it.
    """

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors = {k: list(v) for k, v in errors.items()}
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))


TIMEOUT_MIN = 1
TIMEOUT_MAX = 86_400  # E2B's longest sandbox lifetime (Pro tier: 24 h)
ON_TIMEOUT_CHOICES = ("kill", "pause")
MAX_ID_LENGTH = 128
# Template and snapshot ids / names as E2B accepts them: letters, digits, and the
# separators of namespaced names and tags (``team/name:tag``).
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")

DEFAULT_TEMPLATE = "base"
DEFAULT_TIMEOUT = 3600

# Lifecycle policies (applied by the beat job in sessions/policies.py); all off when absent.
IDLE_MINUTES = (1, 1440)
IDLE_CPU_PERCENT = (0.1, 100.0)
DEFAULT_IDLE_CPU_PERCENT = 2.0
PAUSED_DAYS = (1, 365)
SESSION_HOURS = (1, 720)
MAX_SESSION_ACTIONS = ("terminate", "pause")
POLICY_KEYS = (
    "idlePauseMinutes",
    "idleCpuPercent",
    "pausedTerminateDays",
    "maxSessionHours",
    "maxSessionAction",
)


# --- the rules of each key (messages follow the key's name: "timeoutSeconds: must be …") ---


def _string_id(what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise InputError(f"must be a string ({what}), not {_json_type(value)}.")
        value = value.strip()
        if not value:
            raise InputError(f"must not be empty ({what}).")
        if len(value) > MAX_ID_LENGTH:
            raise InputError(f"must be at most {MAX_ID_LENGTH} characters.")
        if not ID_RE.fullmatch(value):
            raise InputError(
                "may contain only letters, digits and . _ : / - (and must start with a "
                "letter or digit)."
            )
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"must be true or false, not {_json_type(value)}.")
    return value


def _timeout(value: Any) -> int:
    # bool is a subclass of int in Python; JSON true is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"must be a whole number of seconds, not {_json_type(value)}.")
    if not TIMEOUT_MIN <= value <= TIMEOUT_MAX:
        raise InputError(f"must be between {TIMEOUT_MIN} and {TIMEOUT_MAX} seconds.")
    return value


def _on_timeout(value: Any) -> str:
    if not isinstance(value, str) or value not in ON_TIMEOUT_CHOICES:
        raise InputError('must be "kill" or "pause".')
    return value


def _whole(unit: str, bounds: tuple[int, int]) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"must be a whole number of {unit}, not {_json_type(value)}.")
        if not bounds[0] <= value <= bounds[1]:
            raise InputError(f"must be between {bounds[0]} and {bounds[1]} {unit}.")
        return value

    return check


def _cpu_percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"must be a number (CPU %), not {_json_type(value)}.")
    low, high = IDLE_CPU_PERCENT
    if not low <= value <= high:
        raise InputError(f"must be between {low:g} and {high:g} (CPU %).")
    return float(value)


def _max_session_action(value: Any) -> str:
    if not isinstance(value, str) or value not in MAX_SESSION_ACTIONS:
        raise InputError('must be "terminate" or "pause".')
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _key(check: Callable[[Any], Any], type_label: str, description: str) -> Any:
    return (
        BeforeValidator(rule(check)),
        Field(description=description, json_schema_extra={"type_label": type_label}),
    )


class E2BConfig(BaseModel):
    """An E2B pool's config (JSON keys as E2B's SDK names them)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    templateId: Annotated[
        str,
        *_key(
            _string_id("an E2B template ID or name"),
            "string",
            "E2B template ID. Must be a custom template with the donmai binary.",
        ),
    ] = DEFAULT_TEMPLATE
    launchRunnerInline: Annotated[
        bool,
        *_key(
            _bool,
            "boolean",
            "Launch donmai agent run via execCommand after provision. Use only if your "
            "template's start command cannot be set.",
        ),
    ] = False
    timeoutSeconds: Annotated[
        int,
        *_key(
            _timeout,
            "integer",
            f"Sandbox timeout passed on create ({TIMEOUT_MIN}–{TIMEOUT_MAX} s; E2B's tier "
            "caps apply: 1 h on Hobby, 24 h on Pro).",
        ),
    ] = DEFAULT_TIMEOUT
    onTimeout: Annotated[
        Literal["kill", "pause"],
        *_key(
            _on_timeout,
            "kill | pause",
            "What E2B does when the timeout is reached: kill the sandbox, or pause it "
            "(paused sandboxes cost $0 and can be resumed).",
        ),
    ] = "kill"
    snapshotId: Annotated[
        str | None,
        *_key(
            _optional(_string_id("an E2B snapshot ID")),
            "string",
            "Optional: start sandboxes from this E2B snapshot instead of the template.",
        ),
    ] = None
    envVars: Annotated[
        dict[str, str] | None,
        *_key(
            _optional(env_map),
            "object",
            "Optional: environment variables set in every sandbox (NAME: value). Values "
            "are encrypted at rest and never shown again: pages show ••••.",
        ),
    ] = None
    idlePauseMinutes: Annotated[
        int | None,
        *_key(
            _optional(_whole("minutes", IDLE_MINUTES)),
            "integer",
            f"Optional: pause a running session whose CPU stayed under idleCpuPercent for this "
            f"many minutes ({IDLE_MINUTES[0]}–{IDLE_MINUTES[1]}). Off when absent.",
        ),
    ] = None
    idleCpuPercent: Annotated[
        float | None,
        *_key(
            _optional(_cpu_percent),
            "number",
            f"Optional: the CPU % under which a session counts as idle "
            f"({IDLE_CPU_PERCENT[0]:g}–{IDLE_CPU_PERCENT[1]:g}; {DEFAULT_IDLE_CPU_PERCENT:g} "
            "when absent).",
        ),
    ] = None
    pausedTerminateDays: Annotated[
        int | None,
        *_key(
            _optional(_whole("days", PAUSED_DAYS)),
            "integer",
            f"Optional: terminate sessions paused longer than this many days "
            f"({PAUSED_DAYS[0]}–{PAUSED_DAYS[1]}). Off when absent.",
        ),
    ] = None
    maxSessionHours: Annotated[
        int | None,
        *_key(
            _optional(_whole("hours", SESSION_HOURS)),
            "integer",
            f"Optional: a session's age limit in hours ({SESSION_HOURS[0]}–{SESSION_HOURS[1]}), "
            "counted from when it first ran, paused time included. Off when absent.",
        ),
    ] = None
    maxSessionAction: Annotated[
        Literal["terminate", "pause"] | None,
        *_key(
            _optional(_max_session_action),
            "terminate | pause",
            "Optional: what happens to a session older than maxSessionHours: terminate it "
            "(running or paused; the default), or pause it (running ones only).",
        ),
    ] = None


@dataclass(frozen=True)
class ConfigKey:
    """One key of the config, for the docs table and the form's defaults."""

    name: str
    type_label: str
    default: Any
    description: str
    optional: bool = False  # absent (not defaulted) when not given


def _keys() -> tuple[ConfigKey, ...]:
    out = []
    for name, field in E2BConfig.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        out.append(
            ConfigKey(
                name=name,
                type_label=str(extra.get("type_label", "")),
                default=field.default,
                description=field.description or "",
                optional=field.default is None,
            )
        )
    return tuple(out)


SCHEMA = _keys()
KEYS = {key.name: key for key in SCHEMA}

# The product doc's example, shown beside the raw-JSON editor.
EXAMPLE_CONFIG: dict[str, Any] = {"templateId": "abc123def456", "launchRunnerInline": False}


def defaults() -> dict[str, Any]:
    return {key.name: key.default for key in SCHEMA if not key.optional}


def validate_e2b_config(raw: Any) -> dict[str, Any]:
    """The normalised config (defaults filled in), or ``ConfigError`` naming each bad key."""
    if not isinstance(raw, dict):
        raise ConfigError({"config": [f"must be a JSON object, not {_json_type(raw)}."]})
    try:
        config = E2BConfig.model_validate(raw)
    except PydanticValidationError as exc:
        raise ConfigError(_errors(exc)) from None
    # Optional keys left out, null or empty are all the same: stored as absent.
    return {k: v for k, v in config.model_dump().items() if v not in (None, {}, "")}


def _errors(exc: PydanticValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for item in exc.errors(include_url=False):
        key = item["loc"][0] if item["loc"] else "config"
        if item["type"] == "extra_forbidden":
            text = f"{_short(key)} is not a known key (known keys: {', '.join(KEYS)})."
            errors.setdefault(str(key)[:60] or "config", []).append(text)
        else:
            errors.setdefault(str(key), []).append(item["msg"])
    return errors


# What pages show for an env value; given back in the raw JSON or the admin, it keeps the
# stored value (pools/env.py).
MASK = "••••"
# Where the config column keeps the encrypted env values (pools/env.py).
ENCRYPTED_ENV_KEY = "envVarsEncrypted"


def masked(config: Any) -> Any:
    """The config for read-only pages and audit rows: env var values replaced by dots."""
    if not isinstance(config, dict):
        return config
    names = [*(config.get("envVars") or {}), *(config.get(ENCRYPTED_ENV_KEY) or {})]
    out = {k: v for k, v in config.items() if k != ENCRYPTED_ENV_KEY}
    if names:
        out["envVars"] = {name: MASK for name in names}
    return out


def is_base_template(config: dict[str, Any]) -> bool:
    """True when sandboxes would start from E2B's bare ``base`` template (no donmai)."""
    if config.get("snapshotId"):
        return False
    return str(config.get("templateId") or DEFAULT_TEMPLATE).strip() in ("", DEFAULT_TEMPLATE)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "…"
