from __future__ import annotations

from django.apps import AppConfig


class AgentSessionsConfig(AppConfig):
    # The label must not be "sessions": that is django.contrib.sessions' label.
    name = "sessions"
    label = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the session tasks in every process, not only the worker: jobs are sent by
        # name (sessions.enqueue), and a registered task keeps its own options (eager mode
        # runs it in place). Here, not at the top: the tasks import models.
        from sessions import events_out, intents, retention, tasks  # noqa: F401

        # Sessions that ran and their intervals are never deleted (billing records).
        retention.connect()
        # Who holds each in-flight job, and the workers' sweep for the stranded ones.
        intents.connect()
        # Every state change writes its event to the outbox (sessions.events_out).
        events_out.connect()
        # Session and command env values re-encrypt on rotate_credentials.
        from rensei import sealed
        from sessions.models import CommandRun, Session

        sealed.register(sealed.SealedColumn("session env values", Session, "env", sealed.TOKEN_MAP))
        sealed.register(sealed.SealedColumn("command env values", CommandRun, "env_encrypted"))
