"""Build the demo organisation through the same functions the product uses.

Idempotent: a second run finds what the first made and changes nothing but passwords
it was asked to reset. Refuses to run with DEBUG off unless --force.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from rensei.models import Membership, Organization, Role

DEMO_USERS = [("admin", Role.ADMIN, True), ("finance", Role.FINANCE, False)]


class Command(BaseCommand):
    help = "Create (or refresh) the demo organisation and its users."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Run even with DEBUG off.")
        parser.add_argument(
            "--password",
            default=None,
            help="Password for the demo users (default: 'demo-<role>' in DEBUG, random otherwise).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("Refusing to seed demo data with DEBUG off; pass --force to insist.")
        with transaction.atomic():
            org, _ = Organization.objects.get_or_create(slug="demo", defaults={"name": "Demo Org"})
            logins = []
            user_model = get_user_model()
            for username, role, is_staff in DEMO_USERS:
                password = options["password"] or (
                    f"demo-{username}" if settings.DEBUG else secrets.token_urlsafe(12)
                )
                user, _ = user_model.objects.get_or_create(username=username)
                user.is_staff = is_staff
                user.is_superuser = is_staff
                user.set_password(password)
                user.save()
                Membership.objects.update_or_create(user=user, org=org, defaults={"role": role})
                logins.append((username, role, password))
            self.extend_demo(org)
        self.stdout.write(self.style.SUCCESS(f"Demo organisation '{org.slug}' is ready."))
        for username, role, password in logins:
            self.stdout.write(f"  login: {username} / {password}  ({role})")

    def extend_demo(self, org: Organization) -> None:
        """Later parts (pools, sessions, billing) add their demo data here."""
