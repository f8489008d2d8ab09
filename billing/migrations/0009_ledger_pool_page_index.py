import django.db.models.deletion
from django.db import migrations, models

# The index Django made for the pool's foreign key (the same name on every backend).
FK_INDEX = "billing_costevent_pool_id_61dcd635"


class Migration(migrations.Migration):
    """The ledger filtered by pool reads a page's ids from a (pool, org, occurred_at, id)
    index, as the unfiltered ledger reads (org, occurred_at, id). Leading with the pool, it
    also serves the foreign key's lookups, so the column's own index is dropped.

    The field is changed in Django's state only: altering it in the database would rebuild
    the table on SQLite (losing the ledger's triggers) and re-validate the foreign key over
    every ledger row on PostgreSQL, where dropping the index is all there is to do."""

    dependencies = [
        ("billing", "0008_ledger_page_id_index"),
        ("pools", "0003_encrypt_pool_env_values"),
    ]

    # The new index first, then the one it replaces: never a moment without either.
    operations = [
        migrations.AddIndex(
            model_name="costevent",
            index=models.Index(
                fields=["pool", "org", "occurred_at", "id"], name="cost_pool_org_occurred_id_idx"
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="costevent",
                    name="pool",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="cost_events",
                        to="pools.capacitypool",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{FK_INDEX}"',
                    reverse_sql=f'CREATE INDEX "{FK_INDEX}" ON "billing_costevent" ("pool_id")',
                ),
            ],
        ),
    ]
