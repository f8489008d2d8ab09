"""``manage.py check_ledger``: prove the daily rollup equals the ledger; exit 1 if not."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.integrity import check_and_alert


class Command(BaseCommand):
    help = "Prove the daily cost rollup equals the ledger (per org, day, issue, pool)."

    def handle(self, *args: Any, **options: Any) -> None:
        found = check_and_alert()
        if found:
            for item in found[:20]:
                self.stderr.write(str(item))
            raise CommandError(
                f"The rollup disagrees with the ledger in {len(found)} group(s); "
                "an audit event was recorded for each org involved."
            )
        self.stdout.write("Ledger check: the rollup equals the ledger.")
