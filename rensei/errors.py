"""The product's own error pages while DEBUG is on (the embedded default runs with DEBUG).

Django answers a 404, a bad request or an uncaught exception with its technical pages
whenever DEBUG is on (``response_for_exception`` in django/core/handlers/exception.py), and
``handler404`` is not consulted then. Those pages list every URL pattern or show settings and
tracebacks, which is not what a newcomer trying the demo should meet. With
``RENSEI_TECHNICAL_ERRORS`` off (the default) this middleware renders templates/404.html,
templates/500.html and Django's plain 400 instead; the traceback of a 500 still goes to the
log (``django.request``), so nothing is hidden from developers. Set
``RENSEI_TECHNICAL_ERRORS=true`` to get Django's pages back. With DEBUG off it does nothing:
Django already uses the product's pages. (403s use templates/403.html in both modes.)

**Outages.** When the database or the broker does not answer (PostgreSQL restarting, Redis
down), whatever raised (a view, a middleware reading the login session) the answer is a 503
with ``Retry-After``, in DEBUG or not: templates/503.html for pages, rendered without the
request (its context processors would ask the database again), and the API's JSON error
body for /api/ paths. ``handler500`` (``server_error``) makes that choice for what Django
answers itself; a ``got_request_exception`` receiver remembers the exception for the
responses built in DEBUG, which this middleware then replaces.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.core import signals
from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError
from django.db import OperationalError as DatabaseUnavailable
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.template import loader
from django.urls import get_resolver, get_urlconf
from django.utils.log import log_response
from django.views import defaults
from kombu.exceptions import OperationalError as BrokerUnavailable

logger = logging.getLogger("django.request")

# Django answers these with the product's 403 page and its plain 400 in DEBUG too.
HANDLED_BY_DJANGO = (PermissionDenied, MultiPartParserError)
# Set on the pages rendered here, so the response check in __call__ leaves them alone.
MARK = "_rensei_error_page"
# What an outage raises: the database gone or restarting, the broker unreachable.
UNAVAILABLE = (DatabaseUnavailable, InterfaceError, BrokerUnavailable)
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_TEXT = (
    "Rensei is briefly unavailable: its database or job queue is not answering. "
    f"Try again in {RETRY_AFTER_SECONDS} seconds."
)
API_PREFIX = "/api/"
SERVER_ERROR_TEXT = "Something went wrong on our side; the error was logged."
_SEEN = "_rensei_exception"


# SQLite reports a missing table (a bug: a migration not run) as an OperationalError too;
# only these of its messages are an outage worth waiting out.
SQLITE_OUTAGE = ("database is locked", "unable to open database", "disk i/o error")


def unavailable(exc: BaseException | None) -> bool:
    """An outage to wait out, not a bug: the database or the broker not answering."""
    if not isinstance(exc, UNAVAILABLE):
        return False
    if isinstance(exc.__cause__, sqlite3.Error):
        return any(text in str(exc).lower() for text in SQLITE_OUTAGE)
    return True


def unavailable_response(request: HttpRequest, exc: BaseException | None = None) -> HttpResponse:
    """503 with Retry-After: the API's JSON error body under /api/, else templates/503.html."""
    logger.warning(
        "503 %s: %s (%s)", request.path, type(exc).__name__ if exc else "outage", str(exc)[:200]
    )
    response: HttpResponse
    if request.path.startswith(API_PREFIX):
        response = JsonResponse({"error": UNAVAILABLE_TEXT}, status=503)
    else:
        # No request: the context processors (the user, the active org) need the database.
        html = loader.get_template("503.html").render({"retry_after": RETRY_AFTER_SECONDS})
        response = HttpResponse(html, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    setattr(response, MARK, True)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a 503 when the exception being handled is an outage, else Django's."""
    exc = sys.exc_info()[1] or getattr(request, _SEEN, None)
    if unavailable(exc):
        return unavailable_response(request, exc)
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"error": SERVER_ERROR_TEXT}, status=500)
    return defaults.server_error(request)


def _remember_exception(sender: Any, request: HttpRequest | None = None, **_: Any) -> None:
    if request is not None:
        setattr(request, _SEEN, sys.exc_info()[1])


signals.got_request_exception.connect(_remember_exception, dispatch_uid="rensei-errors-seen")


def _active() -> bool:
    return bool(settings.DEBUG) and not getattr(settings, "RENSEI_TECHNICAL_ERRORS", False)


def _error_page(request: HttpRequest, status: int, exc: Exception | None) -> HttpResponse:
    resolver = get_resolver(get_urlconf())
    callback = cast(Any, resolver.resolve_error_handler(status))
    response: HttpResponse = (
        callback(request) if status == 500 else callback(request, exception=exc)
    )
    if not getattr(response, "is_rendered", True) and callable(getattr(response, "render", None)):
        response = response.render()  # type: ignore[attr-defined]
    setattr(response, MARK, True)
    return response


def _server_error_page(request: HttpRequest) -> HttpResponse:
    try:
        return _error_page(request, 500, None)
    except Exception:
        logger.exception("The 500 page itself failed: %s", request.path)
        response = HttpResponse(
            "Something went wrong. The error was logged.",
            status=500,
            content_type="text/plain; charset=utf-8",
        )
        setattr(response, MARK, True)
        return response


class ProductErrorPages:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self._outage(request, self.get_response(request))
        if not _active() or getattr(response, MARK, False):
            return response
        # No view matched the path: Django has already built its technical 404 (the
        # resolver fails before any view or process_exception runs). resolver_match is only
        # set once a URL pattern matched, so a view's own 404 response is left alone.
        if response.status_code == 404 and getattr(request, "resolver_match", None) is None:
            return _error_page(request, 404, None)
        # An exception in a middleware after this one: Django has logged it and built its
        # technical 500. Views answer their own errors in JSON or with the product's pages.
        if response.status_code == 500 and "text/html" in response.get("Content-Type", ""):
            return _server_error_page(request)
        return response

    def _outage(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        seen = getattr(request, _SEEN, None)
        if response.status_code == 500 and not getattr(response, MARK, False) and unavailable(seen):
            return unavailable_response(request, seen)
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if unavailable(exc):
            return unavailable_response(request, exc)
        if not _active() or isinstance(exc, HANDLED_BY_DJANGO):
            return None
        if isinstance(exc, Http404):
            return _error_page(request, 404, exc)
        if isinstance(exc, BadRequest | SuspiciousOperation):
            # As Django does without DEBUG: a plain 400, logged (SuspiciousOperation to the
            # django.security logger, as its handlers expect).
            if isinstance(exc, RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent):
                request._mark_post_parse_error()  # type: ignore[attr-defined]
            response = _error_page(request, 400, exc)
            log_response(
                "%s: %s",
                str(exc) or type(exc).__name__,
                request.path,
                response=response,
                request=request,
                exception=exc,
                logger=logging.getLogger(f"django.security.{exc.__class__.__name__}")
                if isinstance(exc, SuspiciousOperation)
                else logger,
            )
            return response
        # What Django does for an uncaught exception, minus the technical page: tell
        # listeners (the test client re-raises through this signal), log the traceback.
        signals.got_request_exception.send(sender=None, request=request)
        response = _server_error_page(request)
        log_response(
            "%s: %s",
            response.reason_phrase,
            request.path,
            response=response,
            request=request,
            exception=exc,
        )
        return response
