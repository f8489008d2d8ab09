from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0005_commandrun_timed_out"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="last_cpu_pct",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="session",
            name="last_metrics_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
