"""The product's own error pages while DEBUG is on (the embedded default runs with DEBUG).

Django answers a 404 or an uncaught exception with its technical pages whenever DEBUG is on
(``response_for_exception`` in django/core/handlers/exception.py), and ``handler404`` is not
consulted then. Those pages list every URL pattern or show settings and tracebacks, which is
not what a newcomer trying the demo should meet. With ``RENSEI_TECHNICAL_ERRORS`` off (the
default) this middleware renders templates/404.html and templates/500.html instead; the 500's
traceback still goes to the log (``django.request``), so nothing is hidden from developers.
Set ``RENSEI_TECHNICAL_ERRORS=true`` to get Django's pages back. With DEBUG off it does
nothing: Django already uses the product's pages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core import signals
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import get_resolver, get_urlconf

logger = logging.getLogger("django.request")

# Django answers these with the product's 403 page, or a 400, already (and logs them).
HANDLED_BY_DJANGO = (PermissionDenied, BadRequest, SuspiciousOperation, MultiPartParserError)


def _active() -> bool:
    return bool(settings.DEBUG) and not getattr(settings, "RENSEI_TECHNICAL_ERRORS", False)


def _error_page(request: HttpRequest, status: int, exc: Exception | None) -> HttpResponse:
    resolver = get_resolver(get_urlconf())
    callback = resolver.resolve_error_handler(status)
    response: HttpResponse = (
        callback(request) if status == 500 else callback(request, exception=exc)
    )
    if not getattr(response, "is_rendered", True) and callable(getattr(response, "render", None)):
        response = response.render()  # type: ignore[attr-defined]
    return response


class ProductErrorPages:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # No view matched the path: Django has already built its technical 404 (the
        # resolver fails before any view or process_exception runs). resolver_match is only
        # set once a URL pattern matched, so a view's own 404 response is left alone.
        if (
            response.status_code == 404
            and getattr(request, "resolver_match", None) is None
            and _active()
        ):
            return _error_page(request, 404, None)
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not _active() or isinstance(exc, HANDLED_BY_DJANGO):
            return None
        if isinstance(exc, Http404):
            return _error_page(request, 404, exc)
        # What Django does for an uncaught exception, minus the technical page: tell
        # listeners (the test client re-raises through this signal), log the traceback.
        signals.got_request_exception.send(sender=None, request=request)
        logger.error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exc,
            extra={"status_code": 500, "request": request},
        )
        try:
            return _error_page(request, 500, exc)
        except Exception:
            logger.exception("The 500 page itself failed: %s", request.path)
            return HttpResponse(
                "Something went wrong. The error was logged.",
                status=500,
                content_type="text/plain; charset=utf-8",
            )
