"""Spend control: budgets per org, pool and issue, forecasts, threshold alerts, enforcement.

The top layer: it reads the ledger (billing) and acts on sessions (sessions).
"""

from __future__ import annotations

from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    verbose_name = "Budgets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these import models, which the app registry loads
        # only after every AppConfig exists.
        from budgets import services, tasks  # noqa: F401  (tasks registers the beat pass)
        from budgets.panel import dashboard_panel
        from sessions import admission, dashboard_panels

        # Sessions sit below budgets and never import them: the create path, dispatch and
        # the queue reason ask budgets through the hooks handed down here.
        admission.connect(
            admission.AdmissionHooks(
                blocks=services.blocks,
                set_issue_budget=services.set_issue_budget,
                refused=services.record_refusal,
            )
        )
        dashboard_panels.register(dashboard_panel)
