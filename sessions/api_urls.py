"""The JSON API under /api/v1/ (see sessions/api.py; described at /api/v1/openapi.json)."""

from __future__ import annotations

from django.urls import path

from sessions import api

urlpatterns = [
    path("openapi.json", api.openapi, name="api_openapi"),
    path("sessions", api.sessions_collection, name="api_sessions"),
    path("sessions/<int:session_id>", api.session_detail, name="api_session"),
    path("sessions/<int:session_id>/pause", api.session_pause, name="api_session_pause"),
    path("sessions/<int:session_id>/resume", api.session_resume, name="api_session_resume"),
    path(
        "sessions/<int:session_id>/terminate",
        api.session_terminate,
        name="api_session_terminate",
    ),
    path("sessions/<int:session_id>/exec", api.session_exec, name="api_session_exec"),
    path(
        "sessions/<int:session_id>/exec/<int:run_id>",
        api.session_exec_run,
        name="api_session_exec_run",
    ),
    # Anything else under /api/v1/ answers like the API does (JSON 401/404), not with a page.
    path("<path:unknown>", api.not_found, name="api_not_found"),
]
