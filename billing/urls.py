from __future__ import annotations

from django.urls import path

from billing import savings, views

urlpatterns = [
    path("analytics/cost-per-issue/", views.cost_per_issue, name="cost_per_issue"),
    # <path:…>: issue keys come from outside and may contain a slash.
    path("analytics/issues/<path:key>/", views.issue_cost, name="issue_cost"),
    path("billing/ledger/", views.ledger, name="ledger"),
    path("billing/auto-pause-savings/", savings.savings, name="auto_pause_savings"),
]
