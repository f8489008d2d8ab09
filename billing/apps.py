from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate

from billing import close_triggers, triggers


def _reinstall_sqlite_triggers(using: str = "default", **kwargs: Any) -> None:
    """SQLite drops a table's triggers when a migration rebuilds the table; put them back.

    PostgreSQL keeps triggers across ALTER TABLE, so migrations alone manage them there.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    tables = set(connection.introspection.table_names())
    if {triggers.LEDGER, triggers.ROLLUP} <= tables:
        triggers.install(connection)
    if {triggers.LEDGER, close_triggers.CLOSES} <= tables:
        close_triggers.install(connection)


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: the ledger imports models, which the app registry
        # loads only after every AppConfig exists.
        from billing import (
            integrity,  # noqa: F401  (registers the daily ledger check task)
            recon_runs,  # noqa: F401  (registers the daily reconciliation)
        )
        from billing.dashboard import cost_summary, session_cost
        from billing.ledger import bill_closed_interval
        from billing.live_cost import ZERO, cost_so_far
        from sessions import costs
        from sessions.intervals import interval_closed

        post_migrate.connect(_reinstall_sqlite_triggers, sender=self)
        # Billing prices what sessions meter: every closed running interval gets its cost
        # event in the same transaction (an interval is closed iff it is billed).
        interval_closed.connect(bill_closed_interval, dispatch_uid="billing.bill_closed_interval")
        # The session pages show cost through functions billing hands down (sessions sits
        # below billing and never imports it).
        costs.connect(
            costs.CostViews(
                summary=cost_summary, session=session_cost, so_far=cost_so_far, nothing=ZERO
            )
        )
