"""The ledger's append-only guard and the rollup trigger (see billing/triggers.py)."""

from __future__ import annotations

from django.db import migrations


def install(apps, schema_editor):  # type: ignore[no-untyped-def]
    from billing import triggers

    connection = schema_editor.connection
    if triggers.install(connection):
        triggers.rebuild_rollup(connection)


def uninstall(apps, schema_editor):  # type: ignore[no-untyped-def]
    from billing import triggers

    triggers.uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_ledger_rollup_and_reversal_permission")]
    operations = [migrations.RunPython(install, uninstall)]
