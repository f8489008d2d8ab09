import django.db.models.deletion
from django.db import migrations, models

# The index Django made for the org's foreign key (the same name on every backend).
FK_INDEX = "billing_costevent_org_id_3bbf0970"


class Migration(migrations.Migration):
    """The ledger's (org, occurred_at, id) index carries the session, pool, provider and
    amount as included columns (PostgreSQL), so Cost by outcome sums a period's rows by
    session from the index alone instead of reading every ledger row in session order. It
    leads with the org, so it also serves the org's foreign key, whose own index is dropped:
    the ledger keeps as many indexes as before.

    As in 0009, the field is changed in Django's state only: altering it in the database would
    rebuild the table on SQLite (losing the ledger's triggers) and re-validate the foreign key
    over every ledger row on PostgreSQL, where dropping the index is all there is to do."""

    dependencies = [
        ("billing", "0009_ledger_pool_page_index"),
        ("rensei", "0006_api_token_scopes_and_expiry"),
    ]

    # The new index first, then the ones it replaces: never a moment without either.
    operations = [
        migrations.AddIndex(
            model_name="costevent",
            index=models.Index(
                fields=["org", "occurred_at", "id"],
                include=("session", "pool", "provider", "amount"),
                name="cost_org_occurred_cover_idx",
            ),
        ),
        migrations.RemoveIndex(model_name="costevent", name="cost_org_occurred_id_idx"),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="costevent",
                    name="org",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="cost_events",
                        to="rensei.organization",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{FK_INDEX}"',
                    reverse_sql=f'CREATE INDEX "{FK_INDEX}" ON "billing_costevent" ("org_id")',
                ),
            ],
        ),
    ]
