"""Reading JSON API input: bodies, query strings and headers, checked field by field.

Every check raises :class:`InvalidInput` with the dotted name of the field at fault
(``issue.key``, ``env.TOKEN``) and a message fit for the caller, so the API answers 400 and
names the field instead of failing somewhere deeper with a 500. The rules here are the
ones ``sessions/api_schema.py`` publishes; the two are kept side by side on purpose.

Strings are refused when they hold a NUL character or lone surrogates: PostgreSQL cannot
store either, so they would otherwise surface as a database error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import RequestDataTooBig, ValidationError
from django.core.validators import URLValidator
from django.http import HttpRequest

from sessions.services import DEFAULT_EXEC_TIMEOUT, MAX_ENV_NAME, MAX_EXEC_TIMEOUT
from sessions.services import ISSUE_KEY_RE as ISSUE_KEY_RE
from sessions.services import MAX_COMMAND as MAX_COMMAND
from sessions.services import MAX_ENV_VALUE as MAX_ENV_VALUE
from sessions.services import MAX_ENV_VARS as MAX_ENV_VARS
from sessions.services import MAX_KINDS as MAX_KINDS

# The limits are the engine's (sessions.services), published as they are enforced.
ENV_NAME_RE = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_ENV_NAME - 1}}}")
MAX_TIMEOUT = MAX_EXEC_TIMEOUT
DEFAULT_TIMEOUT = DEFAULT_EXEC_TIMEOUT
MAX_KIND_LENGTH = 64
MAX_IDEMPOTENCY_KEY = 255
# What the pages will link to: http(s) only, no spaces or control characters.
URL_RE = re.compile(r"https?://[^\s\x00-\x1f\x7f]+")
# Row ids are BIGINTs: a larger id cannot exist, and SQLite would overflow on it.
MAX_ID = 2**63 - 1
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


class InvalidInput(Exception):
    """Bad input. ``fields`` maps each field at fault to its message."""

    def __init__(self, message: str, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})


def bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", {field: message})


# --- bodies --------------------------------------------------------------------------------


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or InvalidInput naming ``body``."""
    content_type = request.content_type or ""
    if content_type.lower() != "application/json":
        raise bad("body", "Send a JSON object with Content-Type: application/json.")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise bad("body", "The body is too large.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("body", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise bad("body", "The body must be a JSON object.")
    return data


def canonical_hash(data: Any) -> str:
    """SHA-256 of the canonical JSON form: same content, same hash, whatever the key order."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def only_fields(data: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    for key in data:
        if key not in allowed:
            name = f"{prefix}{key}"[:100]
            raise bad(name, f"Unknown field. Expected one of: {', '.join(sorted(allowed))}.")


def clean_text(value: str, field: str) -> str:
    if "\x00" in value:
        raise bad(field, "Must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(field, "Must be valid Unicode text.") from None
    return value


def string(
    data: Mapping[str, Any],
    name: str,
    *,
    field: str | None = None,
    required: bool = False,
    min_length: int = 0,
    max_length: int,
    nullable: bool = False,
) -> str | None:
    """``data[name]`` as a string. Absent (or null when ``nullable``) → None."""
    field = field or name
    if name not in data or (nullable and data[name] is None):
        if required:
            raise bad(field, "This field is required.")
        return None
    value = data[name]
    if not isinstance(value, str):
        raise bad(field, "Must be a string.")
    clean_text(value, field)
    if len(value) < min_length:
        raise bad(field, "Must not be empty." if min_length == 1 else f"At least {min_length}.")
    if len(value) > max_length:
        raise bad(field, f"At most {max_length} characters.")
    return value


def string_list(
    data: Mapping[str, Any], name: str, *, required: bool = False, max_items: int = MAX_KINDS
) -> list[str] | None:
    if name not in data:
        if required:
            raise bad(name, "This field is required (an empty list is fine).")
        return None
    value = data[name]
    if not isinstance(value, list):
        raise bad(name, "Must be a list of strings.")
    if len(value) > max_items:
        raise bad(name, f"At most {max_items} items.")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise bad(f"{name}[{i}]", "Must be a string.")
        clean_text(item, f"{name}[{i}]")
        if not item or len(item) > MAX_KIND_LENGTH:
            raise bad(f"{name}[{i}]", f"Must be 1 to {MAX_KIND_LENGTH} characters.")
        out.append(item)
    return out


def env_map(data: Mapping[str, Any], name: str = "env") -> dict[str, str] | None:
    """A ``{NAME: value}`` object of environment variables. Absent or null → None."""
    if name not in data or data[name] is None:
        return None
    value = data[name]
    if not isinstance(value, dict):
        raise bad(name, "Must be an object of NAME: value strings.")
    if len(value) > MAX_ENV_VARS:
        raise bad(name, f"At most {MAX_ENV_VARS} variables.")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not ENV_NAME_RE.fullmatch(key):
            raise bad(
                f"{name}.{key}"[:100],
                "Variable names are letters, digits and _ and do not start with a digit.",
            )
        if not isinstance(val, str):
            raise bad(f"{name}.{key}", "Must be a string.")
        clean_text(val, f"{name}.{key}")
        if len(val) > MAX_ENV_VALUE:
            raise bad(f"{name}.{key}", f"At most {MAX_ENV_VALUE} characters.")
        out[key] = val
    return out


def integer(data: Mapping[str, Any], name: str, *, default: int, minimum: int, maximum: int) -> int:
    if name not in data or data[name] is None:
        return default
    value = data[name]
    # bool is an int in Python; JSON true is not a number. JSON Schema counts 600.0 as an
    # integer, so a float without a fraction is one here too.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(name, "Must be an integer.")
    if not minimum <= value <= maximum:
        raise bad(name, f"Must be between {minimum} and {maximum}.")
    return value


def url(value: str | None, field: str) -> str:
    if not value:
        return ""
    if not URL_RE.fullmatch(value):
        raise bad(field, "Must be an http(s) URL.")
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        raise bad(field, "Must be an http(s) URL.") from None
    return value


# --- query strings and headers -------------------------------------------------------------


def query_text(request: HttpRequest, name: str, *, max_length: int = 200) -> str | None:
    """A query-string value (the last one if repeated), or None when absent or empty."""
    value = request.GET.get(name)
    if value is None or value == "":
        return None
    clean_text(value, name)
    if len(value) > max_length:
        raise bad(name, f"At most {max_length} characters.")
    return value


def query_int(request: HttpRequest, name: str, *, default: int, minimum: int, maximum: int) -> int:
    value = query_text(request, name, max_length=20)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit():
        raise bad(name, "Must be a whole number.")
    number = int(value)
    if not minimum <= number <= maximum:
        raise bad(name, f"Must be between {minimum} and {maximum}.")
    return number


def idempotency_key(request: HttpRequest) -> str:
    """The Idempotency-Key header ('' when absent)."""
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return ""
    if len(value) > MAX_IDEMPOTENCY_KEY or not IDEMPOTENCY_KEY_RE.fullmatch(value):
        raise bad(
            "Idempotency-Key",
            f"Must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters.",
        )
    return value
