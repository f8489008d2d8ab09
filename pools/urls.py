from __future__ import annotations

from django.urls import path

from pools import views, views_pool

urlpatterns = [
    path("settings/execution/capacity/", views.capacity, name="capacity"),
    path("settings/execution/capacity/new/", views_pool.pool_new, name="pool_new"),
    path(
        "settings/execution/capacity/new/template-hint/",
        views_pool.template_hint,
        name="pool_template_hint",
    ),
    path(
        "settings/execution/capacity/new/<slug:kind>/",
        views_pool.pool_new_kind,
        name="pool_new_kind",
    ),
    path("settings/execution/capacity/<int:pk>/", views_pool.pool_detail, name="pool_detail"),
    path(
        "settings/execution/capacity/<int:pk>/move/<str:direction>/",
        views.pool_move,
        name="pool_move",
    ),
    path(
        "settings/execution/capacity/<int:pk>/enable/",
        views.pool_enable,
        {"enable": True},
        name="pool_enable",
    ),
    path(
        "settings/execution/capacity/<int:pk>/disable/",
        views.pool_enable,
        {"enable": False},
        name="pool_disable",
    ),
    path("settings/execution/capacity/<int:pk>/delete/", views.pool_delete, name="pool_delete"),
    path("settings/execution/capacity/<int:pk>/check/", views.pool_check, name="pool_check"),
    path("settings/execution/capacity/<int:pk>/health/", views.pool_health, name="pool_health"),
]
