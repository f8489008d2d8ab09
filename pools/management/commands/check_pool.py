"""``manage.py check_pool POOL [--org SLUG] [--timeout SECONDS]``: run a pool health check
now and print it.

POOL is a pool id or name (a name needs ``--org`` when several orgs use it). The check runs
in this process (the same job function the worker runs), so it works with no worker up.
Every provider call is bounded by ``--timeout`` (default 30 s): a stalled provider fails the
check saying so instead of hanging the terminal. Exits non-zero when the check fails.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pools.cli import add_timeout_option
from pools.models import CapacityPool, HealthStatus, PoolHealthCheck
from pools.providers import call_timeout
from pools.tasks import check_pool, start_check
from rensei.models import Channel


class Command(BaseCommand):
    help = "Provision a sandbox from a pool's config, run `which donmai`, terminate it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("pool", help="pool id or name")
        parser.add_argument("--org", help="organisation slug (to pick a pool by name)")
        add_timeout_option(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        pool = self._find(str(options["pool"]), options.get("org"))
        check = start_check(pool, channel=Channel.CLI)
        self.stdout.write(f"Checking pool {pool.name} (org {pool.org.slug}, check {check.pk})…")
        with call_timeout(options["timeout"]):
            check_pool(check.pk)
        check = PoolHealthCheck.objects.get(pk=check.pk)
        timings = ", ".join(f"{label} {ms} ms" for label, ms in check.timing_items())
        self.stdout.write(check.output)
        if timings:
            self.stdout.write(f"Timings: {timings}")
        if check.status != HealthStatus.PASSING:
            raise CommandError(f"Pool {pool.name} is failing its health check.")
        self.stdout.write(self.style.SUCCESS(f"Pool {pool.name} passed."))

    def _find(self, ref: str, org: str | None) -> CapacityPool:
        pools = CapacityPool.objects.select_related("org")
        if org:
            pools = pools.filter(org__slug=org)
        if ref.isdigit():
            by_id = pools.filter(pk=int(ref)).first()
            if by_id is not None:
                return by_id
        matches = list(pools.filter(name=ref)[:2])
        if not matches:
            where = f" in org {org}" if org else ""
            raise CommandError(f"No pool {ref!r}{where}.")
        if len(matches) > 1:
            raise CommandError(f"Several orgs have a pool named {ref!r}: pass --org SLUG.")
        return matches[0]
