"""Bulk-load a realistic cost ledger for the benchmarks: ``python -m bench.seed_costs``.

    python -m bench.seed_costs --events 1000000 --issues 10000 --sessions 100000 [--days 90]

(the benchmarks call ``seed_costs(...)`` directly). For one organisation (created if
missing), everything ending before now:

- issues ``<PREFIX>-1`` … ``<PREFIX>-N`` (existing ones are reused) and a few capacity pools
  (created disabled, so dispatch never sends real work to them);
- ``sessions`` terminated sessions spread over the last ``days`` days, each with the vCPU
  and memory of its sandbox, drawn by ``bench.seed_plan``;
- their running intervals (paused gaps between them, split at every UTC midnight as the daily
  accrual splits them), all closed;
- one ledger row per interval, written the way ``billing.ledger.emit_sandbox_cost_event``
  writes it: same idempotency key (``interval_key``), same rate card (the one in effect when
  the interval started), same amount (``billing.ledger.price`` of the exact seconds).

Speed: one transaction, in chunks of sessions. On PostgreSQL rows go in through COPY (ids
drawn from the tables' sequences, so other writers can keep inserting); elsewhere (SQLite, for
tests) through multi-row INSERTs where the ledger's insert trigger keeps the daily rollup.
On PostgreSQL as a superuser the per-row triggers (the rollup upsert and the deferred
foreign-key checks, most of the cost of a load) are switched off for this transaction only
(``SET LOCAL session_replication_role = replica``) and replaced by what they would have done:
the referenced organisation, issues, pools and rate cards are locked ``FOR KEY SHARE`` first,
each chunk is added to the rollup with the trigger's own arithmetic in one grouped upsert, and
three joins check every reference before commit. ``with_triggers`` keeps the triggers (the
only way without superuser rights). Either way the loader finally checks that the ledger and
the rollup agree for the organisation, and rolls everything back if not.

A benchmark tool, not a product command: it writes synthetic money into the ledger.
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import sys
import time
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import django
from django.apps import apps

# Run on its own (python -m), Django is set up here, before the models import; imported by
# the benchmarks or the tests, it already is.
if not apps.ready:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rensei.settings")
    django.setup()

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from bench.seed_plan import DAY_MS, Generator, Plan, SeedError, dt_of, ms_of
from bench.seed_rows import (
    EVENT_COLUMNS,
    INTERVAL_COLUMNS,
    SESSION_COLUMNS,
    Stamps,
    TableWriter,
)
from billing import triggers
from billing.ledger import price
from billing.models import CostEvent, CostKind, DailyCost, RateCard
from pools.models import CapacityPool
from rensei.models import Organization
from sessions.models import Issue, RunningInterval, Session, SessionState

PROVIDER = "e2b"
CHUNK_SESSIONS = 5_000
TERMINATED = SessionState.TERMINATED.value
SANDBOX_SECONDS = CostKind.SANDBOX_SECONDS.value


class RateCards:
    """The card in effect at an instant (``billing.ledger.rate_card_for``, without a query)."""

    def __init__(self) -> None:
        cards = list(RateCard.objects.filter(provider=PROVIDER).order_by("effective_from"))
        if not cards:
            raise SeedError(f"No {PROVIDER} rate card: run the billing migrations first.")
        self.cards = cards
        self.starts = [ms_of(c.effective_from) for c in cards]

    def at(self, ms: int) -> RateCard:
        i = bisect.bisect_right(self.starts, ms) - 1
        if i < 0:
            raise SeedError(
                f"No {PROVIDER} rate card in effect at {dt_of(ms):%Y-%m-%d}; use fewer --days."
            )
        return self.cards[i]


def seed_costs(
    *,
    events: int = 10_000,
    issues: int = 100,
    sessions: int = 1_000,
    days: int = 90,
    org: str = "demo",
    prefix: str = "SEED",
    pools: int = 3,
    seed: int = 1,
    with_triggers: bool = False,
    force: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Load the ledger; returns a summary (issues, amount, top 1% share, seconds, bulk).

    Raises SeedError, with nothing written, on numbers or a database it cannot seed."""
    if not settings.DEBUG and not force:
        raise SeedError("Refusing to seed synthetic costs with DEBUG off; pass --force.")
    if connection.vendor not in ("postgresql", "sqlite"):
        raise SeedError("The ledger loader supports PostgreSQL and SQLite.")
    if sessions < 1 or events < sessions:
        raise SeedError("Need at least one session and at least one event per session.")
    if issues < 0 or days < 1 or pools < 1:
        raise SeedError("--issues must be ≥ 0, --days and --pools ≥ 1.")

    started = time.monotonic()
    with transaction.atomic():
        bulk = not with_triggers and can_skip_triggers()
        org_row, issue_ids, pool_ids = _parents(org, prefix, issues, pools)
        cards = RateCards()
        if bulk:
            skip_triggers(org_row.pk, issue_ids, pool_ids, [c.pk for c in cards.cards])
        # The window ends at ``now`` (default: the clock); a fixed one repeats a run exactly
        # (the rate card in effect at each moment depends on where the window falls).
        now_ms = ms_of((now or timezone.now()).replace(microsecond=0)) - 60_000
        gen = Generator(
            random.Random(seed),
            issue_ids=issue_ids,
            pool_ids=pool_ids,
            sessions=sessions,
            events=events,
            window=(now_ms - days * DAY_MS, now_ms),
        )
        writers = (
            TableWriter(Session, SESSION_COLUMNS),
            TableWriter(RunningInterval, INTERVAL_COLUMNS),
            # Nothing refers to a new ledger row: the database numbers them.
            TableWriter(CostEvent, EVENT_COLUMNS, with_ids=False),
        )
        posted = timezone.now()
        for first in range(0, sessions, CHUNK_SESSIONS):
            plans = list(gen.plans(first, min(sessions, first + CHUNK_SESSIONS)))
            session_ids = write_chunk(org_row.pk, plans, writers, cards, posted)
            if bulk:
                add_to_rollup(session_ids)
        if bulk:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = origin")
            check_references(org_row.pk)
        summary = verify(org_row, issue_ids)
    summary.update(seconds=round(time.monotonic() - started, 2), bulk=bulk)
    return summary


def describe(org: str, events: int, sessions: int, summary: dict[str, Any]) -> str:
    """One line on what a load wrote, for a person watching the run."""
    elapsed = max(summary["seconds"], 0.01)
    return (
        f"Seeded org '{org}': {events} ledger rows, {sessions} sessions, "
        f"{summary['issues']} issues, total {summary['amount']} USD, in {elapsed:.1f} s "
        f"({events / elapsed:,.0f} rows/s{', triggers on' if not summary['bulk'] else ''}); "
        f"top 1% of issues carry {summary['top1_share']:.0%} of the cost."
    )


def can_skip_triggers() -> bool:
    """PostgreSQL superuser: row triggers (the rollup, foreign-key checks) can be switched
    off for this transaction only (``SET LOCAL session_replication_role``)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SHOW is_superuser")
        return bool(cursor.fetchone()[0] == "on")


def _parents(
    slug: str, prefix: str, issues: int, pools: int
) -> tuple[Organization, list[int], list[int]]:
    """The organisation, its issues and its (disabled) pools, existing ones reused."""
    org, _ = Organization.objects.get_or_create(
        slug=slug, defaults={"name": slug.replace("-", " ").title()}
    )
    keys = [f"{prefix}-{i}" for i in range(1, issues + 1)]
    Issue.objects.bulk_create(
        [Issue(org=org, key=k, title=f"Synthetic issue {k}") for k in keys],
        ignore_conflicts=True,
        batch_size=5_000,
    )
    issue_ids = list(Issue.objects.filter(org=org, key__in=keys).values_list("id", flat=True))
    pool_ids = []
    for i in range(1, pools + 1):
        pool, _ = CapacityPool.objects.get_or_create(
            org=org,
            name=f"seed-pool-{i}",
            defaults={"provider": PROVIDER, "enabled": False, "order": 1000 + i,
                      "config": {"templateId": "donmai-worker"}},
        )  # fmt: skip
        pool_ids.append(pool.pk)
    return org, issue_ids, pool_ids


def skip_triggers(org_id: int, issue_ids: list[int], pool_ids: list[int], cards: list[int]) -> None:
    """Switch row triggers off for this transaction, and take the locks the foreign-key
    triggers would have taken: the parents our rows point at cannot be deleted before we
    commit (our own new sessions and intervals need no lock)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for model, ids in (
            (Organization, [org_id]),
            (Issue, issue_ids),
            (CapacityPool, pool_ids),
            (RateCard, cards),
        ):
            cursor.execute(
                f"SELECT id FROM {model._meta.db_table} WHERE id = ANY(%s) FOR KEY SHARE",
                [ids],
            )


def write_chunk(
    org_id: int,
    plans: list[Plan],
    writers: tuple[TableWriter, TableWriter, TableWriter],
    cards: RateCards,
    posted: datetime,
) -> list[int]:
    sessions_w, intervals_w, events_w = writers
    stamp = Stamps(text=sessions_w.postgres)
    posted_at = stamp(ms_of(posted))
    session_ids = sessions_w.ids(len(plans))
    interval_ids = iter(intervals_w.ids(sum(len(p.intervals) for p in plans)))
    session_rows, interval_rows, event_rows = [], [], []
    for sid, plan in zip(session_ids, plans, strict=True):
        first, last = plan.intervals[0][0], plan.intervals[-1][1]
        ended = stamp(last)
        session_rows.append((
            sid, org_id, plan.issue_id, plan.pool_id, PROVIDER, TERMINATED, uuid.uuid4(),
            f"seed{sid:016x}", plan.template, plan.vcpu, plan.memory_mb, 1,
            stamp(first - 2000), ended, stamp(first), ended,
        ))  # fmt: skip
        n = len(plan.intervals)
        for j, (a, b) in enumerate(plan.intervals):
            iid = next(interval_ids)
            start, end = stamp(a), stamp(b)
            if j == n - 1:
                reason = "terminate"
            elif b % DAY_MS == 0 and plan.intervals[j + 1][0] == b:
                reason = "daily-accrual"
            else:
                reason = "pause"
            interval_rows.append((iid, sid, start, end, reason))
            card = cards.at(a)
            # = exact_seconds(end - start) for whole milliseconds, without a timedelta; the
            # amount is the ledger's own price, and the key interval_key's format.
            seconds = Decimal(b - a).scaleb(-3)
            amount = price(seconds, plan.vcpu, plan.memory_mb, card)
            event_rows.append((
                org_id, sid, plan.issue_id, plan.pool_id, PROVIDER,
                SANDBOX_SECONDS, seconds, plan.vcpu, plan.memory_mb, card.pk, amount,
                card.currency, start, end, end,
                f"sandbox-seconds:session-{sid}:interval-{iid}", posted_at,
            ))  # fmt: skip
    sessions_w.write(session_rows)
    intervals_w.write(interval_rows)
    events_w.write(event_rows)
    return session_ids


def add_to_rollup(session_ids: list[int]) -> None:
    """What the rollup trigger does per row, once per group for these new sessions' rows:
    billing.triggers' own rebuild query, limited to them and added to what is there."""
    rollup = triggers.ROLLUP
    group_by = f"FROM {triggers.LEDGER} GROUP BY"
    rebuild = next(sql for sql in triggers.REBUILD["postgresql"] if group_by in sql)
    sql = rebuild.replace(group_by, f"FROM {triggers.LEDGER} WHERE session_id = ANY(%s) GROUP BY")
    sql += f"""
        ON CONFLICT {triggers.CONFLICT_TARGET} DO UPDATE SET
            amount = {rollup}.amount + EXCLUDED.amount,
            quantity_seconds = {rollup}.quantity_seconds + EXCLUDED.quantity_seconds,
            vcpu_seconds = {rollup}.vcpu_seconds + EXCLUDED.vcpu_seconds,
            entries = {rollup}.entries + EXCLUDED.entries"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_ids])


def check_references(org_id: int) -> None:
    """The checks the skipped foreign-key triggers would have made, as three joins."""
    t = {m.__name__: m._meta.db_table for m in (Session, RunningInterval, CostEvent, Issue)}
    pools, cards = CapacityPool._meta.db_table, RateCard._meta.db_table
    checks = {
        "ledger rows": f"""
            SELECT count(*) FROM {t["CostEvent"]} e
            LEFT JOIN {t["Session"]} s ON s.id = e.session_id
            LEFT JOIN {t["Issue"]} i ON i.id = e.issue_id
            LEFT JOIN {pools} p ON p.id = e.pool_id
            LEFT JOIN {cards} r ON r.id = e.rate_card_id
            WHERE e.org_id = %(org)s AND (r.id IS NULL
                OR (e.session_id IS NOT NULL AND s.id IS NULL)
                OR (e.issue_id IS NOT NULL AND i.id IS NULL)
                OR (e.pool_id IS NOT NULL AND p.id IS NULL))""",
        "sessions": f"""
            SELECT count(*) FROM {t["Session"]} s
            LEFT JOIN {t["Issue"]} i ON i.id = s.issue_id
            LEFT JOIN {pools} p ON p.id = s.pool_id
            WHERE s.org_id = %(org)s AND ((s.issue_id IS NOT NULL AND i.id IS NULL)
                OR (s.pool_id IS NOT NULL AND p.id IS NULL))""",
        "intervals": f"""
            SELECT count(*) FROM {t["RunningInterval"]} v
            LEFT JOIN {t["Session"]} s ON s.id = v.session_id WHERE s.id IS NULL""",
    }
    with connection.cursor() as cursor:
        for what, sql in checks.items():
            cursor.execute(sql, {"org": org_id})
            broken = cursor.fetchone()[0]
            if broken:
                raise SeedError(f"{broken} {what} point at rows that do not exist.")


def verify(org: Organization, issue_ids: list[int]) -> dict[str, Any]:
    """The ledger and the rollup agree for the org (else roll everything back)."""
    ledger = CostEvent.objects.filter(org=org).aggregate(
        amount=models.Sum("amount"), n=models.Count("id")
    )
    rollup = DailyCost.objects.filter(org=org).aggregate(
        amount=models.Sum("amount"), n=models.Sum("entries")
    )
    if (ledger["amount"], ledger["n"]) != (rollup["amount"], rollup["n"]):
        raise SeedError(f"Rollup disagrees with the ledger: {ledger} vs {rollup}")
    per_issue = sorted(
        (
            r["amount"]
            for r in DailyCost.objects.filter(org=org, issue_id__in=issue_ids)
            .values("issue_id")
            .annotate(amount=models.Sum("amount"))
            .order_by()
        ),
        reverse=True,
    )
    total = sum(per_issue, Decimal(0))
    top = per_issue[: max(1, len(issue_ids) // 100)]
    return {
        "issues": len(issue_ids),
        "amount": (ledger["amount"] or Decimal(0)).quantize(Decimal("0.01")),
        "top1_share": float(sum(top, Decimal(0)) / total) if total else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.seed_costs",
        description="Bulk-load a realistic, skewed cost ledger (sessions, intervals, ledger rows).",
    )
    parser.add_argument("--events", type=int, default=10_000, help="ledger rows to add")
    parser.add_argument("--issues", type=int, default=100, help="issues to spread them on")
    parser.add_argument("--sessions", type=int, default=1_000, help="sessions to add")
    parser.add_argument("--days", type=int, default=90, help="how far back usage goes")
    parser.add_argument("--org", default="demo", help="organisation slug (created if missing)")
    parser.add_argument("--prefix", default="SEED", help="issue key prefix (SEED-1, …)")
    parser.add_argument("--pools", type=int, default=3, help="capacity pools to spread on")
    parser.add_argument("--seed", type=int, default=1, help="random seed (repeatable runs)")
    parser.add_argument(
        "--with-triggers",
        action="store_true",
        help="PostgreSQL: keep the per-row rollup trigger and deferred foreign-key checks "
        "(slower; what happens anyway when the database user is not a superuser)",
    )
    parser.add_argument("--force", action="store_true", help="run even with DEBUG off")
    opts = vars(parser.parse_args(argv))
    try:
        summary = seed_costs(**opts)
    except SeedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(opts["org"], opts["events"], opts["sessions"], summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
