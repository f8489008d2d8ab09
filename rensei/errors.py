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
"""

from __future__ import annotations

import logging
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
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import get_resolver, get_urlconf
from django.utils.log import log_response

logger = logging.getLogger("django.request")

# Django answers these with the product's 403 page and its plain 400 in DEBUG too.
HANDLED_BY_DJANGO = (PermissionDenied, MultiPartParserError)
# Set on the pages rendered here, so the response check in __call__ leaves them alone.
MARK = "_rensei_error_page"


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
        response = self.get_response(request)
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

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
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
