"""The input rules every entry point shares: each rule is written here once, as a Pydantic type.

The JSON API's schemas (sessions/schemas.py) are built from these types, so the OpenAPI
document states the rule that is enforced; the forms call :func:`check` with the same type in
``clean_*``; the services check again with it before anything is saved; the pool config model
(pools/config.py) uses the env rule. A broken rule raises :class:`InputError` with a message
fit for the person who typed the value: the same words on a page, in an API 400 and in the
admin.

Environment variables (sessions, exec, pool config): names ``[A-Za-z_][A-Za-z0-9_]*`` up to
128 characters (POSIX shell names; E2B passes any such name through, lower case included),
at most 100 of them, values up to 32 768 characters. E2B hands the variables to the
sandbox's process, and Linux caps one ``NAME=value`` string at 128 KiB: 32 768 characters
stay under it for any text of up to 3 bytes per character in UTF-8, and keep secrets as
long as PEM keys and JSON service-account keys (2–4 KB) with room to spare. The cap counts
characters so the form, the JSON Schema (``maxLength``) and the message all say the same.

This module is the bottom layer's: it imports nothing from pools, sessions or billing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any, TypeVar

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

T = TypeVar("T")

# PostgreSQL cannot store NUL: every string refuses it (and the document says so).
NO_NUL = "^[^\\u0000]*$"
MAX_ID = 2**63 - 1  # row ids are BIGINTs: a larger id cannot exist

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV_NAME = 128
MAX_ENV_VARS = 100
MAX_ENV_VALUE = 32_768

ISSUE_KEY_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")
MAX_ISSUE_KEY = 64
MAX_ISSUE_TITLE = 300
MAX_ISSUE_URL = 500
# What the pages will link to: http(s) only, no spaces or control characters.
URL_RE = re.compile(r"https?://[^\s\x00-\x1f\x7f]+")

MAX_COMMAND = 10_000
MIN_EXEC_TIMEOUT = 1
MAX_EXEC_TIMEOUT = 3600
DEFAULT_EXEC_TIMEOUT = 600

MAX_KINDS = 50
MAX_KIND_LENGTH = 64


class InputError(ValueError):
    """A broken input rule. ``key`` names the entry at fault inside a map (an env name)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key

    def __str__(self) -> str:
        return self.message


def rule(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """A rule function as a Pydantic validator: its message is the error's, word for word."""

    def validate(value: Any) -> T:
        try:
            return fn(value)
        except InputError as exc:
            ctx = {"key": exc.key} if exc.key is not None else None
            raise PydanticCustomError("rensei_rule", exc.message, ctx) from None

    return validate


# --- the rules ---------------------------------------------------------------------------


def clean_text(value: str) -> str:
    if "\x00" in value:
        raise InputError("Must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("Must be valid Unicode text.") from None
    return value


def issue_key(value: str) -> str:
    if not ISSUE_KEY_RE.fullmatch(value):
        raise InputError("1 to 64 characters without spaces, e.g. ENG-142.")
    return value


def issue_url(value: str) -> str:
    if not value:
        return ""
    try:
        if not URL_RE.fullmatch(value):
            raise ValidationError("")
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        raise InputError("Must be an http(s) URL.") from None
    return value


def command(value: str) -> str:
    if not value.strip():
        raise InputError("Enter a command.")
    return value


def env_name(name: Any) -> str:
    if not isinstance(name, str) or len(name) > MAX_ENV_NAME or not ENV_NAME_RE.fullmatch(name):
        shown = name if isinstance(name, str) else repr(name)
        shown = shown if len(shown) <= 40 else shown[:39] + "…"
        raise InputError(
            f"“{shown}” is not a valid variable name: use letters, digits and _, not "
            f"starting with a digit (at most {MAX_ENV_NAME} characters).",
            key=str(name)[:100],
        )
    return name


def env_value(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InputError(f"The value of {name} must be a string.", key=name)
    if len(value) > MAX_ENV_VALUE:
        raise InputError(
            f"The value of {name} is longer than {MAX_ENV_VALUE} characters.", key=name
        )
    if "\x00" in value:
        raise InputError(f"The value of {name} contains a NUL character.", key=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"The value of {name} is not valid Unicode text.", key=name) from None
    return value


def env_map(value: Any) -> dict[str, str]:
    """``{NAME: value}``: every name and value by the rules above, at most 100 of them."""
    if not isinstance(value, Mapping):
        raise InputError("Must be an object of NAME: value strings.")
    if len(value) > MAX_ENV_VARS:
        raise InputError(f"At most {MAX_ENV_VARS} variables.")
    return {env_name(name): env_value(name, text) for name, text in value.items()}


def exec_timeout(value: Any) -> int:
    """Seconds. JSON Schema counts 600.0 as an integer, so a float without a fraction is one
    here too; JSON ``true`` and ``"10"`` are not numbers (bool is an int in Python)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError("Must be a whole number of seconds.")
    if not MIN_EXEC_TIMEOUT <= value <= MAX_EXEC_TIMEOUT:
        raise InputError(f"Must be between {MIN_EXEC_TIMEOUT} and {MAX_EXEC_TIMEOUT} seconds.")
    return value


# --- the types ---------------------------------------------------------------------------


def Text(max_length: int, min_length: int = 0, **schema: Any) -> Any:
    """A string of at most ``max_length`` characters, without NUL."""
    return Annotated[
        str,
        StringConstraints(strict=True, min_length=min_length, max_length=max_length),
        AfterValidator(rule(clean_text)),
        Field(json_schema_extra={"pattern": NO_NUL, **schema}),
    ]


IssueKey = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(rule(clean_text)),
    AfterValidator(rule(issue_key)),
    Field(
        description="The issue key, e.g. ENG-142: no spaces.",
        json_schema_extra={
            "minLength": 1,
            "maxLength": MAX_ISSUE_KEY,
            "pattern": f"^{ISSUE_KEY_RE.pattern}$",
        },
    ),
]
IssueTitle = Text(MAX_ISSUE_TITLE)
IssueUrl = Annotated[
    str,
    StringConstraints(strict=True, max_length=MAX_ISSUE_URL),
    AfterValidator(rule(clean_text)),
    AfterValidator(rule(issue_url)),
    Field(
        description="An http(s) URL.",
        json_schema_extra={"format": "uri", "pattern": f"^({URL_RE.pattern})?$"},
    ),
]
Command = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_COMMAND),
    AfterValidator(rule(clean_text)),
    AfterValidator(rule(command)),
    Field(
        description="Run through /bin/bash: pipes, && and nohup work.",
        json_schema_extra={"pattern": NO_NUL, "allOf": [{"pattern": "\\S"}]},
    ),
]
ExecTimeout = Annotated[
    int,
    BeforeValidator(rule(exec_timeout)),
    Field(
        description=f"Seconds (default {DEFAULT_EXEC_TIMEOUT}, ten minutes).",
        json_schema_extra={"minimum": MIN_EXEC_TIMEOUT, "maximum": MAX_EXEC_TIMEOUT},
    ),
]
EnvMap = Annotated[
    dict[str, str],
    PlainValidator(rule(env_map)),
    WithJsonSchema(
        {
            "type": "object",
            "description": "Environment variables (NAME: value). Values are never returned.",
            "maxProperties": MAX_ENV_VARS,
            "propertyNames": {"pattern": f"^[A-Za-z_][A-Za-z0-9_]{{0,{MAX_ENV_NAME - 1}}}$"},
            "additionalProperties": {
                "type": "string",
                "maxLength": MAX_ENV_VALUE,
                "pattern": NO_NUL,
            },
        }
    ),
]
KindItem = Text(MAX_KIND_LENGTH, 1)
KindList = Annotated[list[KindItem], Field(max_length=MAX_KINDS)]  # type: ignore[valid-type]


# --- checking and messages ---------------------------------------------------------------


@cache
def _adapter(type_: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_)


def check(type_: Any, value: Any) -> Any:
    """``value`` by the rule ``type_`` (one of the types above), or the first broken rule as
    :class:`InputError` with the product's message."""
    try:
        return _adapter(type_).validate_python(value)
    except PydanticValidationError as exc:
        first = exc.errors(include_url=False)[0]
        ctx = first.get("ctx") or {}
        raise InputError(message(first), key=ctx.get("key")) from None


def message(error: ErrorDetails) -> str:
    """A Pydantic error in the product's words (a rule's own message is kept as is)."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "rensei_rule":
        return error["msg"]
    if kind == "missing":
        return "This field is required."
    if kind == "extra_forbidden":
        return "Unknown field."
    if kind in ("string_type", "string_unicode"):
        return "Must be a string."
    if kind == "string_too_short":
        return "Must not be empty." if ctx.get("min_length") == 1 else error["msg"]
    if kind == "string_too_long":
        return f"At most {ctx.get('max_length')} characters."
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "Must be a whole number."
    if kind in ("greater_than_equal", "less_than_equal"):
        return _between(error)
    if kind in ("list_type", "tuple_type"):
        return "Must be a list of strings."
    if kind == "too_long":
        return f"At most {ctx.get('max_length')} items."
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "Must be an object."
    if kind in ("enum", "literal_error"):
        return f"Must be one of: {ctx.get('expected', '')}.".replace("'", "")
    if kind == "bool_type":
        return "Must be true or false."
    return str(error["msg"])


def _between(error: ErrorDetails) -> str:
    ctx = error.get("ctx") or {}
    low, high = ctx.get("ge"), ctx.get("le")
    if low is not None and high is None:
        return f"Must be at least {low}."
    if high is not None and low is None:
        return f"Must be at most {high}."
    return f"Must be between {low} and {high}."
