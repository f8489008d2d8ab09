"""Test helpers that are not fixtures."""

from __future__ import annotations

from typing import Any

from django.middleware.csrf import _get_new_csrf_string  # type: ignore[attr-defined]
from django.test import Client


class CsrfClient(Client):
    """A test client that enforces CSRF like a browser session does.

    It holds a CSRF cookie and sends the matching ``X-CSRFToken`` header on unsafe methods,
    the way htmx does with ``hx-headers`` on <body>. Pass ``csrf=False`` to leave the header
    off and see the 403 a forged request gets.
    """

    def __init__(self, **defaults: Any) -> None:
        super().__init__(enforce_csrf_checks=True, **defaults)
        self.csrf_secret = _get_new_csrf_string()
        self.cookies["csrftoken"] = self.csrf_secret

    def generic(  # type: ignore[override]
        self, method: str, path: str, *args: Any, csrf: bool = True, **extra: Any
    ) -> Any:
        if csrf and method.upper() not in {"GET", "HEAD", "OPTIONS", "TRACE"}:
            extra.setdefault("HTTP_X_CSRFTOKEN", self.csrf_secret)
        return super().generic(method, path, *args, **extra)

    def htmx(self, method: str, path: str, data: Any = None, **extra: Any) -> Any:
        """A request as htmx sends it (HX-Request header)."""
        extra.setdefault("HTTP_HX_REQUEST", "true")
        return getattr(self, method.lower())(path, data, **extra)
