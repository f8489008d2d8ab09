"""The API's error bodies: ``{"error": "...", "fields": {"field": "message"}}``, always JSON.

Ninja's own errors (a schema's ValidationError, AuthenticationError, HttpError) are turned
into this shape by the handlers below, registered on the NinjaAPI in sessions/api_urls.py.
Field names are dotted as the caller wrote them: ``issue.key``, ``runtime_kinds[0]``,
``env.TOKEN``, ``Idempotency-Key``, a query parameter's name; ``body`` for a body that is
not a JSON object. Messages are the product's (rensei/inputs.py ``message``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.core import signals
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja.errors import HttpError, ValidationError
from ninja.parser import Parser

from rensei.errors import SERVER_ERROR_TEXT, unavailable, unavailable_response
from rensei.inputs import message

log = logging.getLogger("django.request")

SEND_JSON = "Send a JSON object with Content-Type: application/json."


def error(
    status: int, text: str, fields: Mapping[str, str] | None = None, **extra: Any
) -> JsonResponse:
    body: dict[str, Any] = {"error": text, **extra}
    if fields:
        body["fields"] = dict(fields)
    return JsonResponse(body, status=status)


def unauthorized() -> JsonResponse:
    response = error(401, "Missing, unknown or revoked API token.")
    response["WWW-Authenticate"] = 'Bearer realm="rensei"'
    return response


def unknown_query(names: Iterable[str], allowed: Iterable[str]) -> JsonResponse:
    expected = sorted(allowed)
    said = (
        f"Unknown query parameter. Expected one of: {', '.join(expected)}."
        if expected
        else "Unknown query parameter: this operation takes none."
    )
    fields = {name[:100]: said for name in names}
    first = next(iter(fields))
    return error(400, f"{first}: {said}", fields)


class BodyError(ValueError):
    """A request body that is not a JSON object (the message says what to send)."""


class JsonObjectParser(Parser):
    """Bodies: a JSON object sent as application/json, or a 400 naming ``body``.

    Query strings: an empty value is the same as none (``?state=`` lists every state), and a
    repeated parameter counts once (the last one).
    """

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        if (request.content_type or "").lower() != "application/json":
            raise BodyError(SEND_JSON)
        try:
            raw = request.body
        except RequestDataTooBig:
            raise BodyError("The body is too large.") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BodyError("The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise BodyError("The body must be a JSON object.")
        return data

    def parse_querydict(self, data: Any, list_fields: list[str], request: HttpRequest) -> Any:
        parsed = super().parse_querydict(data, list_fields, request)
        return {key: value for key, value in parsed.items() if value != ""}


def field_name(loc: tuple[Any, ...], ctx: Mapping[str, Any]) -> str:
    """``("body", "payload", "issue", "key")`` → ``issue.key``; list items as ``[0]``."""
    source, *parts = loc
    if source == "body" and parts:
        parts = parts[1:]  # the view's parameter name
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part != "[key]":
            name += f".{part}" if name else str(part)
    if "key" in ctx:
        name = f"{name}.{ctx['key']}" if name else str(ctx["key"])
    return (name or "body")[:100]


def on_validation_error(request: HttpRequest, exc: Any) -> JsonResponse:
    assert isinstance(exc, ValidationError)
    fields: dict[str, str] = {}
    for item in exc.errors:
        loc = tuple(item.get("loc") or ("body",))
        if loc[:1] == ("body",) and len(loc) <= 2 and item.get("type") == "missing":
            fields.setdefault("body", SEND_JSON)  # no body at all
            continue
        fields.setdefault(field_name(loc, item.get("ctx") or {}), message(item))  # type: ignore[arg-type]
    first, said = next(iter(fields.items()))
    return error(400, f"{first}: {said}", fields)


def on_authentication_error(request: HttpRequest, exc: Any) -> JsonResponse:
    return unauthorized()


def on_http_error(request: HttpRequest, exc: Any) -> JsonResponse:
    assert isinstance(exc, HttpError)
    if isinstance(exc.__cause__, BodyError):
        said = str(exc.__cause__)
        return error(400, f"body: {said}", {"body": said})
    return error(exc.status_code, str(exc))


def on_unexpected(request: HttpRequest, exc: Any) -> HttpResponse:
    """Anything else a route raised: never a traceback (ninja's DEBUG answer is one).

    An outage (the database or the broker not answering) is a 503 with ``Retry-After`` the
    caller can wait out; any other error a 500 in the same JSON shape, its traceback logged.
    """
    if unavailable(exc):
        return unavailable_response(request, exc)
    # As Django does for an uncaught exception: listeners (the test client) hear of it.
    signals.got_request_exception.send(sender=None, request=request)
    log.error("Internal Server Error: %s", request.path, exc_info=exc)
    return error(500, SERVER_ERROR_TEXT)
