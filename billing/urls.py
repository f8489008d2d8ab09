from __future__ import annotations

from django.urls import path

from billing import views

urlpatterns = [
    path("analytics/cost-per-issue/", views.cost_per_issue, name="cost_per_issue"),
    path("billing/ledger/", views.ledger, name="ledger"),
]
