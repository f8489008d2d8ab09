"""Create an org API token from the command line and print it (once)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rensei.models import Channel, Organization
from rensei.tokens import (
    DEFAULT_SCOPES,
    SCOPES,
    InvalidScopes,
    InvalidTokenName,
    create_token,
)


class Command(BaseCommand):
    help = "Create an API token for an organisation and print it. It is not shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--name", required=True, help="What will use the token.")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            metavar="SCOPE",
            help=f"A scope to grant (repeat for several): {', '.join(SCOPES)}. "
            f"Default: {' and '.join(DEFAULT_SCOPES)}.",
        )
        parser.add_argument(
            "--expires",
            metavar="YYYY-MM-DD",
            help="Last day (UTC) the token works. Default: until revoked.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"No organisation with slug {options['org']!r}.")
        expires_on = None
        if options["expires"]:
            try:
                expires_on = date.fromisoformat(options["expires"])
            except ValueError:
                raise CommandError("--expires must be a date: YYYY-MM-DD.") from None
        try:
            token, plaintext = create_token(
                org,
                options["name"],
                actor=None,
                channel=Channel.CLI,
                scopes=options["scopes"] or DEFAULT_SCOPES,
                expires_on=expires_on,
            )
        except (InvalidTokenName, InvalidScopes) as exc:
            raise CommandError(str(exc)) from None
        until = f"through {token.expires_on} (UTC)" if token.expires_on else "until revoked"
        self.stderr.write(
            f"Created token “{token.name}” ({token.prefix}…) for {org.slug}, "
            f"scopes {', '.join(token.scopes)}, valid {until}. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(plaintext)
