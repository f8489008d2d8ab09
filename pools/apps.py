from __future__ import annotations

from django.apps import AppConfig


class PoolsConfig(AppConfig):
    name = "pools"
    verbose_name = "Capacity pools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at module top: app modules may import models only once the app
        # registry is ready.
        from pools.connection import check_connection
        from pools.providers import provider_labels
        from rensei import providers

        # The core lists providers and tests keys through these (it sits below pools).
        providers.connect(provider_labels, check_connection)
        # Pool env values re-encrypt on rotate_credentials.
        from pools.sealed import pool_env_column
        from rensei import sealed

        sealed.register(pool_env_column())
