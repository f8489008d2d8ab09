"""Web hardening hooks the settings point at.

- ``SecretsAlwaysHidden``: Django's ``SafeExceptionReporterFilter`` only applies
  ``sensitive_variables`` and ``sensitive_post_parameters`` when DEBUG is off, so a
  developer's (or a misconfigured server's) technical 500 page would show an API key typed
  into Settings → Integrations. This filter applies them always; settings are cleansed as
  before. The views' ``sensitive_post_parameters`` marks only exist once the view runs: a
  request that fails earlier, in a middleware (a bad ``Host`` header), has none. So every
  POST field named like a secret (the key forms' ``secret``/``new_secret``, passwords,
  tokens, session and pool env, the raw pool config) is hidden too, whatever failed.
- ``axes_username``: the username django-axes counts failed logins under. Its column holds
  255 characters and the login form does not bound what it passes on, so a longer name
  would fail the insert (a 500 on PostgreSQL); no account has such a name (150 at most).
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

AXES_USERNAME_LENGTH = 255


# POST fields hidden on every error report, whichever view (if any) the request reached.
SENSITIVE_POST_FIELDS = re.compile(
    r"secret|key|token|passw|pwd|credential|auth|signature|env|^raw_config$|^config$", re.I
)


class SecretsAlwaysHidden(SafeExceptionReporterFilter):
    def is_active(self, request: HttpRequest | None) -> bool:
        return True

    def get_post_parameters(self, request: HttpRequest | None) -> Any:
        params = super().get_post_parameters(request)
        if request is None or not any(SENSITIVE_POST_FIELDS.search(k) for k in params):
            return params
        cleansed = params.copy()
        for name in cleansed:
            if SENSITIVE_POST_FIELDS.search(name):
                cleansed[name] = self.cleansed_substitute
        return cleansed


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None = None) -> str | None:
    if credentials:
        name = credentials.get("username")
    else:
        name = getattr(request, "data", request.POST).get("username")
    return None if name is None else str(name)[:AXES_USERNAME_LENGTH]
