from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from rensei import health, views

# An outage (database or broker not answering) is a 503, anything else the 500 page.
handler500 = "rensei.errors.server_error"

urlpatterns = [
    # Browsers ask for /favicon.ico whatever the page links; answer with the real icon.
    path("favicon.ico", views.favicon, name="favicon"),
    # Probes and the metrics scraper: no login (see rensei/health.py, sessions/metrics.py).
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("sessions.ops_urls")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("org/switch/", views.switch_org, name="switch_org"),
    path("settings/integrations/", views.integrations, name="integrations"),
    path(
        "settings/integrations/<slug:provider>/key/",
        views.integration_key,
        name="integration_key",
    ),
    path(
        "settings/integrations/<slug:provider>/remove/",
        views.integration_remove,
        name="integration_remove",
    ),
    path(
        "settings/integrations/<slug:provider>/test/",
        views.integration_test,
        name="integration_test",
    ),
    path("settings/api-tokens/", views.api_tokens, name="api_tokens"),
    path("settings/api-tokens/new/", views.api_token_create, name="api_token_create"),
    path("settings/api-tokens/<int:pk>/revoke/", views.api_token_revoke, name="api_token_revoke"),
    path("api/v1/", include("sessions.api_urls")),
    path("", include("pools.urls")),
    path("", include("sessions.urls")),
    path("", include("billing.urls")),
    path("", include("events.urls")),
    path("", include("budgets.urls")),
]
