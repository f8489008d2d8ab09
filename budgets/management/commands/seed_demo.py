"""Build the demo organisation through the same functions the product uses.

Idempotent: a second run finds what the first made and changes nothing but passwords
it was asked to reset. Refuses to run with DEBUG off unless --force.

Beyond the users, ``extend_demo`` (``billing.demo.build``) adds the E2B credential for the
local emulator, two pools, a dozen issues, 30 days of session and cost history, live
sessions for the worker to start, and an API token for ``manage.py demo_dispatcher``
(printed once, on the run that creates it); then ``budgets.demo.build`` adds the budgets.
A budgets command because the builders write every app's rows, which only the top layer
may import (README, Layout).
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from billing.demo import Report, build
from budgets import demo as budgets_demo
from rensei.demo import DEMO_ORG_SLUG, TOKEN_NAME
from rensei.models import Membership, Organization, Role

DEMO_USERS = [("admin", Role.ADMIN, True), ("finance", Role.FINANCE, False)]


class Command(BaseCommand):
    help = "Create (or refresh) the demo organisation, its users and its demo data."

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
            org, _ = Organization.objects.get_or_create(
                slug=DEMO_ORG_SLUG, defaults={"name": "Demo Org"}
            )
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
            report = self.extend_demo(org)
        self.stdout.write(self.style.SUCCESS(f"Demo organisation '{org.slug}' is ready."))
        for username, role, password in logins:
            self.stdout.write(f"  login: {username} / {password}  ({role})")
        for note in report.notes:
            self.stdout.write(f"  {note}")
        self._token_lines(org, report)

    def extend_demo(self, org: Organization) -> Report:
        """Pools, issues, sessions, cost history, the dispatcher's token, then budgets."""
        report = build(org)
        report.notes.extend(budgets_demo.build(org))
        return report

    def _token_lines(self, org: Organization, report: Report) -> None:
        # `PORT=9000 make run`: the dispatcher must be told where the server is.
        port = os.environ.get("PORT", "")
        url = f" --url http://127.0.0.1:{port}" if port and port != "8000" else ""
        if report.token:
            self.stdout.write(
                f"  API token “{TOKEN_NAME}” (shown this once; only its hash is stored):\n"
                f"    {report.token}\n"
                "  Make the dashboard move (in a second terminal):\n"
                f"    .venv/bin/python manage.py demo_dispatcher --token {report.token}{url}"
            )
            return
        self.stdout.write(
            f"  API token “{TOKEN_NAME}” exists ({report.token_prefix}…); its secret was shown "
            "once, when it was made. For a new one:\n"
            f"    .venv/bin/python manage.py create_api_token --org {org.slug} "
            '--name "demo dispatcher 2"\n'
            "  or let the dispatcher make its own:\n"
            f"    .venv/bin/python manage.py demo_dispatcher --create-token{url}"
        )
