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
