"""Log context and the JSON line format (``LOG_FORMAT=json``).

Every record carries ``request_id`` (set per request by ``RequestIdMiddleware``, taken from
an incoming ``X-Request-ID`` when it is a sane token, and sent back on the response) and
``session_id`` (set by the job base while a job runs for a session). ``ContextFilter`` puts
them on the record; ``JsonFormatter`` writes one JSON object per line. Messages are what the
code logs: secrets are kept out of them where they are written (redacted provider errors,
exception classes instead of driver messages), never scrubbed here after the fact.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

request_id: ContextVar[str] = ContextVar("request_id", default="")
session_id: ContextVar[str] = ContextVar("session_id", default="")

# What an incoming X-Request-ID may be: a proxy's id, not a place to smuggle text into logs.
SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = "X-Request-ID"


@contextmanager
def bound(var: ContextVar[str], value: str) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.session_id = session_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "session_id"):
            value = getattr(record, key, "")
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RequestIdMiddleware:
    """First in the chain, so every log line of the request carries its id.

    The id stays set after the chain returns, because Django logs a 4xx/5xx answer
    (``django.request``) after the middleware; ``request_finished`` clears it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(HEADER, "")
        rid = incoming if SANE_ID.match(incoming) else uuid.uuid4().hex
        request_id.set(rid)
        response = self.get_response(request)
        response[HEADER] = rid
        return response


@receiver(request_finished, dispatch_uid="rensei.logging.clear_request_id")
def _clear_request_id(**kwargs: object) -> None:
    request_id.set("")
