from django.db import migrations, models


class Migration(migrations.Migration):
    """The ledger's (org, occurred_at) and (org, issue, occurred_at) indexes with the id as
    their last column: the ledger page and an issue's cost page read a page's ids from them
    alone, already in the pages' order (billing/ledger_pages.py). They serve every query the
    old ones did."""

    dependencies = [
        ("billing", "0007_rollup_covering_index"),
    ]

    # Each new index first, then the one it replaces: never a moment without either.
    operations = [
        migrations.AddIndex(
            model_name="costevent",
            index=models.Index(
                fields=["org", "occurred_at", "id"], name="cost_org_occurred_id_idx"
            ),
        ),
        migrations.RemoveIndex(
            model_name="costevent",
            name="cost_org_occurred_idx",
        ),
        migrations.AddIndex(
            model_name="costevent",
            index=models.Index(
                fields=["org", "issue", "occurred_at", "id"], name="cost_org_issue_id_idx"
            ),
        ),
        migrations.RemoveIndex(
            model_name="costevent",
            name="cost_org_issue_idx",
        ),
    ]
