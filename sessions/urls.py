from __future__ import annotations

from django.urls import path

from sessions import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sessions/", views.session_list, name="session_list"),
]
