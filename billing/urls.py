from __future__ import annotations

from django.urls import path

from billing import savings, views, views_close, views_reconcile

urlpatterns = [
    path("analytics/cost-per-issue/", views.cost_per_issue, name="cost_per_issue"),
    path("analytics/cost-per-issue/outcomes/", views.cost_by_outcome, name="cost_by_outcome"),
    # <path:…>: issue keys come from outside and may contain a slash.
    path("analytics/issues/<path:key>/", views.issue_cost, name="issue_cost"),
    path("billing/ledger/", views.ledger, name="ledger"),
    path("billing/auto-pause-savings/", savings.savings, name="auto_pause_savings"),
    path("billing/reconciliation/", views_reconcile.runs, name="reconciliation"),
    path("billing/reconciliation/run/", views_reconcile.run_now, name="reconciliation_run_now"),
    path("billing/reconciliation/<int:pk>/", views_reconcile.run_detail, name="reconciliation_run"),
    path(
        "billing/reconciliation/findings/<int:pk>/settle/",
        views_reconcile.settle_view,
        name="reconciliation_settle",
    ),
    path("billing/months/", views_close.months, name="billing_months"),
    path("billing/months/<str:month>/close/", views_close.close, name="billing_month_close"),
    path("billing/months/<str:month>/reopen/", views_close.reopen, name="billing_month_reopen"),
]
