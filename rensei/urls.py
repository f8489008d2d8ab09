from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from rensei import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("org/switch/", views.switch_org, name="switch_org"),
    path("settings/integrations/", views.integrations, name="integrations"),
    path("settings/api-tokens/", views.api_tokens, name="api_tokens"),
    path("", include("pools.urls")),
    path("", include("sessions.urls")),
    path("", include("billing.urls")),
]
