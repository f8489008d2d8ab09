"""Test connection (Settings → Integrations): one cheap authenticated call with a key, the
answer in words.

It runs inside a web request, so the call is bounded by ``RENSEI_WEB_PROVIDER_TIMEOUT``
seconds: a stalled provider answers "… did not answer within N s" instead of holding a web
thread and reporting success late. The pools app hands this function to the core at
start-up (``rensei.providers.connect``), which has no way to import it.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from pools.providers import build, provider_labels
from pools.providers.base import ProviderError
from rensei.providers import ConnectionTest

logger = logging.getLogger(__name__)


def web_timeout() -> float:
    return float(settings.RENSEI_WEB_PROVIDER_TIMEOUT)


def _redact(text: str, secret: str) -> str:
    """Provider messages are meant to be secret-free; make sure of it before showing one."""
    return text.replace(secret, "••••") if secret else text


@sensitive_variables()
def check_connection(kind: str, secret: str) -> ConnectionTest:
    label = provider_labels().get(kind, kind)
    try:
        latency_ms = build(kind, secret, timeout=web_timeout()).ping()
    except ProviderError as exc:
        if exc.status_code in (401, 403):
            return ConnectionTest(False, f"{label} rejected this key ({exc.status_code})")
        # Provider messages are written for jobs, which retry; a connection test does not.
        message = exc.message.replace("; will retry.", ".").replace("; will retry", "")
        return ConnectionTest(False, _redact(message, secret))
    except Exception as exc:  # a bug or an unexpected library error: say so, never a 500
        logger.warning("Test connection to %s failed unexpectedly: %s", label, type(exc).__name__)
        return ConnectionTest(
            False, f"Connection failed: {_redact(str(exc), secret) or type(exc).__name__}"
        )
    return ConnectionTest(True, f"Connection OK ({label} answered in {round(latency_ms)} ms)")
