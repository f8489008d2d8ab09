"""Web hardening hooks the settings point at.

- ``SecretsAlwaysHidden``: Django's ``SafeExceptionReporterFilter`` only applies
  ``sensitive_variables`` and ``sensitive_post_parameters`` when DEBUG is off, so a
  developer's (or a misconfigured server's) technical 500 page would show an API key typed
  into Settings → Integrations. This filter applies them always; settings are cleansed as
  before.
- ``axes_username``: the username django-axes counts failed logins under. Its column holds
  255 characters and the login form does not bound what it passes on, so a longer name
  would fail the insert (a 500 on PostgreSQL); no account has such a name (150 at most).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

AXES_USERNAME_LENGTH = 255


class SecretsAlwaysHidden(SafeExceptionReporterFilter):
    def is_active(self, request: HttpRequest | None) -> bool:
        return True


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None = None) -> str | None:
    if credentials:
        name = credentials.get("username")
    else:
        name = getattr(request, "data", request.POST).get("username")
    return None if name is None else str(name)[:AXES_USERNAME_LENGTH]
