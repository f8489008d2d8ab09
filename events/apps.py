from __future__ import annotations

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Events and webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the jobs in every process (beat sends them by name). Here, not at the
        # top: the tasks import models.
        from events import tasks  # noqa: F401
        from events.models import WebhookEndpoint
        from rensei import sealed

        # Both secrets re-encrypt on rotate_credentials (the previous one signs for a while).
        for field in ("secret_encrypted", "previous_secret_encrypted"):
            sealed.register(
                sealed.SealedColumn(
                    "webhook signing secrets"
                    if field == "secret_encrypted"
                    else "previous webhook signing secrets",
                    WebhookEndpoint,
                    field,
                    describe=lambda e: f"{e.org.slug}: {e.url}",
                )
            )
