"""Create an org API token from the command line and print it (once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rensei.models import Channel, Organization
from rensei.tokens import InvalidTokenName, create_token


class Command(BaseCommand):
    help = "Create an API token for an organisation and print it. It is not shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--name", required=True, help="What will use the token.")

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"No organisation with slug {options['org']!r}.")
        try:
            token, plaintext = create_token(org, options["name"], actor=None, channel=Channel.CLI)
        except InvalidTokenName as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"Created token “{token.name}” ({token.prefix}…) for {org.slug}. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(plaintext)
