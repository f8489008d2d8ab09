from __future__ import annotations

from django.apps import AppConfig


class RenseiConfig(AppConfig):
    name = "rensei"
    verbose_name = "Rensei core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.core import checks

        from rensei import crypto
        from rensei.checks import encryption_keys

        crypto.remember_deployment_mode(debug=settings.DEBUG)
        # Every encrypted column, for rotate_credentials; the apps above add theirs.
        from rensei import sealed
        from rensei.models import Credential

        sealed.register(
            sealed.SealedColumn(
                "provider keys",
                Credential,
                "secret_encrypted",
                describe=lambda c: f"{c.org.slug}/{c.provider}",
            )
        )
        checks.register(encryption_keys)
        if not settings.DEBUG:
            # gunicorn and Celery run no system checks: a production process without a usable
            # key ring stops here, before it serves a page or takes a job.
            crypto.key_ring()
