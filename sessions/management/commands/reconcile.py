"""``manage.py reconcile [--org SLUG] [--timeout SECONDS]``: one reconciler pass now, in this
process. Every provider call is bounded by ``--timeout`` (default 30 s): a stalled provider
makes the pass report the error instead of hanging the terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from pools.cli import add_timeout_option
from pools.providers import call_timeout
from rensei.models import AuditEvent, Organization
from sessions.reconcile import orgs_to_reconcile, reconcile_org


class Command(BaseCommand):
    help = "Reconcile sessions with the provider's sandboxes (every org, or one with --org)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", metavar="SLUG", help="Only this organisation.")
        add_timeout_option(parser)

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
            started = timezone.now()
            with call_timeout(options["timeout"]):
                summary = reconcile_org(org.pk)
            done = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if v)
            line = f"{org.slug}: {done or 'nothing to do'}"
            if summary.get("errors"):
                self.stdout.write(self.style.WARNING(line))
                for reason in self._failures(org, started):
                    self.stdout.write(self.style.WARNING(f"  {reason}"))
            else:
                self.stdout.write(self.style.SUCCESS(line))

    def _failures(self, org: Organization, since: datetime) -> list[str]:
        """Why the pass could not reach a provider, as the audit log recorded it."""
        rows = AuditEvent.objects.filter(
            org=org, action="reconcile.failed", created_at__gte=since
        ).order_by("id")
        return [f"{row.target}: {row.detail.get('reason', '')}" for row in rows]
