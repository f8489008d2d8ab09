from __future__ import annotations

from django.urls import path

from sessions import views, views_box, views_detail, views_exec

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sessions/", views.session_list, name="session_list"),
    path("sessions/new/", views.session_new, name="session_new"),
    path("sessions/bulk-terminate/", views.bulk_terminate, name="session_bulk_terminate"),
    path("sessions/<int:pk>/", views_detail.session_detail, name="session_detail"),
    path("sessions/<int:pk>/status/", views_detail.session_status, name="session_status"),
    path(
        "sessions/<int:pk>/pause/",
        views_detail.session_action,
        {"action": "pause"},
        name="session_pause",
    ),
    path(
        "sessions/<int:pk>/resume/",
        views_detail.session_action,
        {"action": "resume"},
        name="session_resume",
    ),
    path(
        "sessions/<int:pk>/terminate/",
        views_detail.session_action,
        {"action": "terminate"},
        name="session_terminate",
    ),
    path("sessions/<int:pk>/metrics/", views_box.session_metrics, name="session_metrics"),
    path("sessions/<int:pk>/log/", views_box.session_log, name="session_log"),
    path("sessions/<int:pk>/files/", views_box.session_files, name="session_files"),
    path(
        "sessions/<int:pk>/files/download/",
        views_box.session_file_download,
        name="session_file_download",
    ),
    path("sessions/<int:pk>/exec/", views_exec.session_exec, name="session_exec"),
    path(
        "sessions/<int:pk>/exec/<int:run_id>/",
        views_exec.session_exec_run,
        name="session_exec_run",
    ),
]
