"""Pool env values move out of the clear: the config column encrypts them (pools/env.py)."""

from typing import Any

from django.db import migrations, models

import pools.env


def encrypt_existing(apps: Any, schema_editor: Any) -> None:
    # Loading reads the plaintext envVars as they were; saving through the encrypted field
    # writes them sealed.
    pool_model = apps.get_model("pools", "CapacityPool")
    for pool in pool_model.objects.all().only("pk", "config"):
        if isinstance(pool.config, dict) and pool.config.get("envVars"):
            pool.save(update_fields=["config"])


def decrypt_existing(apps: Any, schema_editor: Any) -> None:
    # Back to the plain column: write the clear form with a plain JSON value.
    pool_model = apps.get_model("pools", "CapacityPool")
    for pool in pool_model.objects.all().only("pk", "config"):
        if isinstance(pool.config, dict) and pool.config.get("envVars"):
            pool_model.objects.filter(pk=pool.pk).update(
                config=models.Value(pool.config, output_field=models.JSONField())
            )


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0002_health_check_claim_and_requester"),
    ]

    operations = [
        migrations.AlterField(
            model_name="capacitypool",
            name="config",
            field=pools.env.EncryptedConfigField(default=dict),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
