"""Re-encrypt every stored secret with the first key of RENSEI_ENCRYPTION_KEYS.

Rotation: put the new key first in the ring (new,old), run this, then drop the old key.
Every encrypted column the apps registered (rensei/sealed.py) is covered: provider keys,
webhook signing secrets (current and previous), session and command env values, pool env
values. Every value is decrypted before any is written, so a ring that misses a key changes
nothing; the writes are one transaction.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from rensei import audit, crypto, sealed
from rensei.models import Channel

NAMED_UNREADABLE = 10  # rows named in the error per column; the rest are counted


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of RENSEI_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            crypto.key_ring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        plan: list[tuple[sealed.SealedColumn, Any, Any, Any]] = []
        unreadable: dict[str, list[Any]] = {}
        for column in sealed.columns():
            for pk, stored in column.rows():
                try:
                    plan.append((column, pk, stored, column.rotated(stored)))
                except crypto.DecryptionError:
                    unreadable.setdefault(column.label, []).append((column, pk))
        if unreadable:
            raise CommandError(self._unreadable_message(unreadable))
        changed: Counter[str] = Counter()
        with transaction.atomic():
            for column, pk, old, new in plan:
                changed[column.label] += column.write(pk, old, new)
            counts = {c.label: changed[c.label] for c in sealed.columns()}
            audit.record(
                org=None,
                action="credentials.rotated",
                target="stored secrets",
                channel=Channel.CLI,
                detail={"count": sum(counts.values()), "by_kind": counts},
            )
        summary = ", ".join(f"{count} {label}" for label, count in counts.items())
        self.stdout.write(f"Re-encrypted with the first key of the ring: {summary}.")

    @staticmethod
    def _unreadable_message(unreadable: dict[str, list[Any]]) -> str:
        parts = []
        for label, rows in unreadable.items():
            names = [column.name(pk) for column, pk in rows[:NAMED_UNREADABLE]]
            more = len(rows) - len(names)
            parts.append(
                f"{len(rows)} {label} ({', '.join(names)}{f' and {more} more' if more else ''})"
            )
        return (
            f"{'; '.join(parts)} cannot be decrypted with RENSEI_ENCRYPTION_KEYS (the key "
            "that encrypted them is not in the ring). Nothing was changed. Put the old key "
            "back in the ring after the new one and run again."
        )
