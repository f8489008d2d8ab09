"""The Rensei control plane: project settings, Celery app and the core domain."""

from __future__ import annotations

from rensei.celery import app as celery_app

__all__ = ["celery_app"]
