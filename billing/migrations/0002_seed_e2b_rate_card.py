"""E2B's published rates: $0.000014 per vCPU-second, $0.0000045 per GiB-second of RAM."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

EFFECTIVE_FROM = datetime(2024, 1, 1, tzinfo=UTC)


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    RateCard = apps.get_model("billing", "RateCard")
    RateCard.objects.get_or_create(
        provider="e2b",
        effective_from=EFFECTIVE_FROM,
        defaults={
            "vcpu_second_price": Decimal("0.000014"),
            "gib_second_price": Decimal("0.0000045"),
            "currency": "USD",
        },
    )


def unseed(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("billing", "RateCard").objects.filter(
        provider="e2b", effective_from=EFFECTIVE_FROM
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
