"""``manage.py reconcile [--org SLUG]``: one reconciler pass now, in this process."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rensei.models import Organization
from sessions.reconcile import orgs_to_reconcile, reconcile_org


class Command(BaseCommand):
    help = "Reconcile sessions with the provider's sandboxes (every org, or one with --org)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", metavar="SLUG", help="Only this organisation.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["org"]:
            org = Organization.objects.filter(slug=options["org"]).first()
            if org is None:
                raise CommandError(f"No organisation with slug {options['org']!r}.")
            orgs = [org]
        else:
            orgs = list(Organization.objects.filter(pk__in=orgs_to_reconcile()))
        if not orgs:
            self.stdout.write("Nothing to reconcile: no organisation has pools or sessions.")
            return
        for org in orgs:
            summary = reconcile_org(org.pk)
            done = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if v)
            line = f"{org.slug}: {done or 'nothing to do'}"
            if summary.get("errors"):
                self.stdout.write(self.style.WARNING(line))
            else:
                self.stdout.write(self.style.SUCCESS(line))
