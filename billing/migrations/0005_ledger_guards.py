"""No TRUNCATE of billing tables, the rollup written only by the ledger's trigger, rate cards
in effect frozen, no reversal of a reversal (see billing/triggers.py)."""

from __future__ import annotations

from django.db import migrations


def install(apps, schema_editor):  # type: ignore[no-untyped-def]
    from billing import triggers

    triggers.install(schema_editor.connection)


def uninstall(apps, schema_editor):  # type: ignore[no-untyped-def]
    from billing import triggers

    triggers.uninstall_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_ledger_triggers")]
    operations = [migrations.RunPython(install, uninstall)]
