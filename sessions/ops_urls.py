"""/metrics: mounted at the root by rensei/urls.py, outside login (it has its own token)."""

from __future__ import annotations

from django.urls import path

from sessions.metrics import metrics_view

urlpatterns = [path("metrics", metrics_view, name="metrics")]
