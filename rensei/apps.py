from __future__ import annotations

from django.apps import AppConfig


class RenseiConfig(AppConfig):
    name = "rensei"
    verbose_name = "Rensei core"
    default_auto_field = "django.db.models.BigAutoField"
