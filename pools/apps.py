from __future__ import annotations

from django.apps import AppConfig


class PoolsConfig(AppConfig):
    name = "pools"
    verbose_name = "Capacity pools"
    default_auto_field = "django.db.models.BigAutoField"
