from __future__ import annotations

from django.apps import AppConfig


class AgentSessionsConfig(AppConfig):
    # The label must not be "sessions": that is django.contrib.sessions' label.
    name = "sessions"
    label = "agent_sessions"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"
