from __future__ import annotations

from django.urls import path

from pools import views

urlpatterns = [
    path("settings/execution/capacity/", views.capacity, name="capacity"),
]
