"""Error reports hide secrets with DEBUG on too.

Django's ``SafeExceptionReporterFilter`` only applies ``sensitive_variables`` and
``sensitive_post_parameters`` when DEBUG is off, so a developer's (or a misconfigured
server's) technical 500 page would show an API key typed into Settings → Integrations. This
filter applies them always; settings are cleansed as before.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter


class SecretsAlwaysHidden(SafeExceptionReporterFilter):
    def is_active(self, request: HttpRequest | None) -> bool:
        return True
