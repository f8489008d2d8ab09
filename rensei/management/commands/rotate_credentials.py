"""Re-encrypt every stored credential with the first key of RENSEI_ENCRYPTION_KEYS.

Rotation: put the new key first in the ring (new,old), run this, then drop the old key.
Every row is decrypted before any is written, so a ring that misses a key changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from rensei import audit, crypto
from rensei.models import Channel, Credential


class Command(BaseCommand):
    help = "Re-encrypt every provider credential with the first key of RENSEI_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            crypto.key_ring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        rows = list(
            Credential.objects.select_related("org").only(
                "pk", "provider", "secret_encrypted", "org__slug"
            )
        )
        rotated: dict[int, tuple[str, str]] = {}
        unreadable: list[str] = []
        for row in rows:
            try:
                rotated[row.pk] = (row.secret_encrypted, crypto.rotate(row.secret_encrypted))
            except crypto.DecryptionError:
                unreadable.append(f"{row.org.slug}/{row.provider}")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} credential(s) cannot be decrypted with "
                f"RENSEI_ENCRYPTION_KEYS (the key that encrypted them is not in the ring): "
                f"{', '.join(unreadable)}. Nothing was changed. Put the old key back in the "
                "ring after the new one and run again."
            )
        changed = 0
        with transaction.atomic():
            for pk, (old, new) in rotated.items():
                # Conditional: a key replaced meanwhile is already encrypted with a ring key.
                changed += Credential.objects.filter(pk=pk, secret_encrypted=old).update(
                    secret_encrypted=new
                )
            audit.record(
                org=None,
                action="credentials.rotated",
                target="provider credentials",
                channel=Channel.CLI,
                detail={"count": changed},
            )
        self.stdout.write(f"Re-encrypted {changed} credential(s) with the first key of the ring.")
