"""``manage.py e2b_emulator``: run the local E2B emulator in the foreground.

A thin wrapper over ``pools.e2b_emulator.server`` (same flags as
``python -m pools.e2b_emulator``). For development and tests only: it is not E2B.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pools.e2b_emulator.server import BANNER, add_arguments, run_from_options


class Command(BaseCommand):
    help = BANNER

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        code = run_from_options(options, out=self.stdout)
        if code:
            raise CommandError("the E2B emulator could not start", returncode=code)
