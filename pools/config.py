"""The E2B pool config schema: the one definition every entry point validates with.

The pool form, the raw-JSON editor, the Django admin and any API all end in
``validate_e2b_config`` (through ``E2BProvider.validate_config``), so a config that was saved
anywhere re-validates everywhere. Types are strict on purpose: JSON ``true`` is not an
integer and ``"3600"`` is not a number, because E2B would reject or misread them later, in a
Celery job, far from the admin who typed them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pools.providers.base import ConfigError

TIMEOUT_MIN = 1
TIMEOUT_MAX = 86_400  # E2B's longest sandbox lifetime (Pro tier: 24 h)
ON_TIMEOUT_CHOICES = ("kill", "pause")
ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
MAX_ENV_VARS = 100
MAX_ENV_VALUE = 4096
MAX_ID_LENGTH = 128
# Template and snapshot ids / names as E2B accepts them: letters, digits, and the
# separators of namespaced names and tags (``team/name:tag``).
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")

DEFAULT_TEMPLATE = "base"
DEFAULT_TIMEOUT = 3600


@dataclass(frozen=True)
class ConfigKey:
    """One key of the config: its JSON type, default and what it means (for the docs table)."""

    name: str
    type_label: str
    default: Any
    description: str
    check: Callable[[Any], Any]  # returns the normalised value or raises ValueError(message)
    required: bool = False
    optional: bool = False  # absent (not defaulted) when not given


def _string_id(what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string ({what}), not {_json_type(value)}.")
        value = value.strip()
        if not value:
            raise ValueError(f"must not be empty ({what}).")
        if len(value) > MAX_ID_LENGTH:
            raise ValueError(f"must be at most {MAX_ID_LENGTH} characters.")
        if not ID_RE.fullmatch(value):
            raise ValueError(
                "may contain only letters, digits and . _ : / - (and must start with a "
                "letter or digit)."
            )
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_json_type(value)}.")
    return value


def _timeout(value: Any) -> int:
    # bool is a subclass of int in Python; JSON true is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number of seconds, not {_json_type(value)}.")
    if not TIMEOUT_MIN <= value <= TIMEOUT_MAX:
        raise ValueError(f"must be between {TIMEOUT_MIN} and {TIMEOUT_MAX} seconds.")
    return value


def _on_timeout(value: Any) -> str:
    if not isinstance(value, str) or value not in ON_TIMEOUT_CHOICES:
        raise ValueError('must be "kill" or "pause".')
    return value


def _env_vars(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"must be an object of NAME: value strings, not {_json_type(value)}.")
    if len(value) > MAX_ENV_VARS:
        raise ValueError(f"may hold at most {MAX_ENV_VARS} variables.")
    out: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            raise ValueError(
                f"{_short(name)} is not a valid variable name (use A-Z, 0-9 and _, "
                "not starting with a digit)."
            )
        if not isinstance(text, str):
            raise ValueError(f"{name} must be a string, not {_json_type(text)}.")
        if len(text) > MAX_ENV_VALUE:
            raise ValueError(f"{name} is longer than {MAX_ENV_VALUE} characters.")
        if "\x00" in text:
            raise ValueError(f"{name} contains a NUL character.")
        out[name] = text
    return out


SCHEMA: tuple[ConfigKey, ...] = (
    ConfigKey(
        "templateId",
        "string",
        DEFAULT_TEMPLATE,
        "E2B template ID. Must be a custom template with the donmai binary.",
        _string_id("an E2B template ID or name"),
    ),
    ConfigKey(
        "launchRunnerInline",
        "boolean",
        False,
        "Launch donmai agent run via execCommand after provision. Use only if your "
        "template's start command cannot be set.",
        _bool,
    ),
    ConfigKey(
        "timeoutSeconds",
        "integer",
        DEFAULT_TIMEOUT,
        f"Sandbox timeout passed on create ({TIMEOUT_MIN}–{TIMEOUT_MAX} s; E2B's tier caps "
        "apply: 1 h on Hobby, 24 h on Pro).",
        _timeout,
    ),
    ConfigKey(
        "onTimeout",
        "kill | pause",
        "kill",
        "What E2B does when the timeout is reached: kill the sandbox, or pause it "
        "(paused sandboxes cost $0 and can be resumed).",
        _on_timeout,
    ),
    ConfigKey(
        "snapshotId",
        "string",
        None,
        "Optional: start sandboxes from this E2B snapshot instead of the template.",
        _string_id("an E2B snapshot ID"),
        optional=True,
    ),
    ConfigKey(
        "envVars",
        "object",
        None,
        "Optional: environment variables set in every sandbox (NAME: value). Not for "
        "secrets: admins and members can read them here.",
        _env_vars,
        optional=True,
    ),
)
KEYS = {key.name: key for key in SCHEMA}

# The product doc's example, shown beside the raw-JSON editor.
EXAMPLE_CONFIG: dict[str, Any] = {"templateId": "abc123def456", "launchRunnerInline": False}


def defaults() -> dict[str, Any]:
    return {key.name: key.default for key in SCHEMA if not key.optional}


def validate_e2b_config(raw: Any) -> dict[str, Any]:
    """The normalised config (defaults filled in), or ``ConfigError`` naming each bad key."""
    if not isinstance(raw, dict):
        raise ConfigError({"config": [f"must be a JSON object, not {_json_type(raw)}."]})
    errors: dict[str, list[str]] = {}
    for name in raw:
        if name not in KEYS:
            label = _short(name)
            errors.setdefault(str(name)[:60] or "config", []).append(
                f"{label} is not a known key (known keys: {', '.join(KEYS)})."
            )
    out: dict[str, Any] = {}
    for key in SCHEMA:
        if key.name not in raw or (key.optional and raw[key.name] is None):
            if not key.optional:
                out[key.name] = key.default
            continue
        try:
            value = key.check(raw[key.name])
        except ValueError as exc:
            errors.setdefault(key.name, []).append(str(exc))
            continue
        # An empty optional map is the same as none: store nothing.
        if key.optional and value in ({}, ""):
            continue
        out[key.name] = value
    if errors:
        raise ConfigError(errors)
    return out


def masked(config: Any) -> Any:
    """The config for read-only pages and audit rows: env var values replaced by dots."""
    if isinstance(config, dict) and isinstance(config.get("envVars"), dict):
        return {**config, "envVars": {name: "••••" for name in config["envVars"]}}
    return config


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
