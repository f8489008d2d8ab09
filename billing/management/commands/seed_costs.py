"""Bulk-load a realistic cost ledger: ``manage.py seed_costs``.

    manage.py seed_costs --events 1000000 --issues 10000 --sessions 100000 [--days 90] [--org SLUG]

For one organisation (created if missing), everything ending before now:

- issues ``<PREFIX>-1`` … ``<PREFIX>-N`` (existing ones are reused) and a few capacity pools
  (created disabled, so dispatch never sends real work to them);
- ``--sessions`` terminated sessions spread over the last ``--days`` days, each with the vCPU
  and memory of its sandbox;
- their running intervals (paused gaps between them, split at every UTC midnight as the daily
  accrual splits them), all closed;
- one ledger row per interval, written the way ``billing.ledger.emit_sandbox_cost_event``
  writes it: same idempotency key (``interval_key``), same rate card (the one in effect when
  the interval started), same amount (``billing.ledger.price`` of the exact seconds).

Skew: sessions pick their issue by a Zipf law (a few issues carry most of the cost, ~2% of
sessions have no issue) and the intervals beyond one per session go to sessions with
lognormal weights. ``--seed`` makes a run repeatable.

Speed: one transaction, in chunks of sessions. On PostgreSQL rows go in through COPY (ids
drawn from the tables' sequences, so other writers can keep inserting); elsewhere (SQLite, for
tests) through multi-row INSERTs where the ledger's insert trigger keeps the daily rollup.
On PostgreSQL as a superuser the per-row triggers (the rollup upsert and the deferred
foreign-key checks, most of the cost of a load) are switched off for this transaction only
(``SET LOCAL session_replication_role = replica``) and replaced by what they would have done:
the referenced organisation, issues, pools and rate cards are locked ``FOR KEY SHARE`` first,
each chunk is added to the rollup with the trigger's own arithmetic in one grouped upsert, and
three joins check every reference before commit. ``--with-triggers`` keeps the triggers (the
only way without superuser rights). Either way the command finally checks that the ledger and
the rollup agree for the organisation, and rolls everything back if not.
"""

from __future__ import annotations

import bisect
import math
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.utils import timezone

from billing import triggers
from billing.ledger import price_per_second
from billing.models import AMOUNT_QUANTUM, CostEvent, CostKind, DailyCost, RateCard
from pools.models import CapacityPool
from rensei.models import Organization
from sessions.models import Issue, RunningInterval, Session, SessionState

DAY_MS = 86_400_000
PROVIDER = "e2b"
CHUNK_SESSIONS = 5_000
UNATTRIBUTED_SHARE = 0.02
ZIPF_EXPONENT = 1.1
# (template, vCPU, memory MiB, weight): what sandboxes the seeded sessions ran in.
SIZES = [("donmai-worker", 2, 1024, 70), ("base", 2, 512, 20), ("donmai-large", 8, 8192, 10)]
TERMINATED = SessionState.TERMINATED.value
SANDBOX_SECONDS = CostKind.SANDBOX_SECONDS.value
RUNNING_MEDIAN_MS = 10 * 60_000  # running stretches: lognormal around 10 minutes
PAUSE_MEAN_MS = 30 * 60_000  # paused gaps: exponential, 30 minutes on average


@dataclass
class Plan:
    """One session to write: who it belongs to and its closed intervals (epoch ms)."""

    issue_id: int | None
    pool_id: int
    template: str
    vcpu: int
    memory_mb: int
    intervals: list[tuple[int, int]]


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def layout(
    start: int, count: int, runs: Sequence[int], gaps: Sequence[int]
) -> list[tuple[int, int]]:
    """``count`` intervals from ``start``: run, pause, run… A run crossing a UTC midnight is
    closed there and reopened at the same instant, as the daily accrual does; that piece
    counts as an interval of its own, so exactly ``count`` come back."""
    out: list[tuple[int, int]] = []
    cur, carry, i = start, 0, 0
    while len(out) < count:
        if carry:
            length, carry = carry, 0
        else:
            if out:
                cur += gaps[i - 1]
            length = runs[i]
            i += 1
        end = cur + length
        midnight = (cur // DAY_MS + 1) * DAY_MS
        if end > midnight:
            carry, end = end - midnight, midnight
        out.append((cur, end))
        cur = end
    return out


class Generator:
    """Draws the sessions (issue, pool, size, intervals) from one seeded random stream."""

    def __init__(
        self,
        rng: random.Random,
        *,
        issue_ids: list[int],
        pool_ids: list[int],
        sessions: int,
        events: int,
        window: tuple[int, int],
    ) -> None:
        self.rng = rng
        self.window = window
        self.pool_ids = pool_ids
        # Zipf over issues, in a shuffled order so the expensive ones are not simply 1, 2, 3.
        ranked = list(issue_ids)
        rng.shuffle(ranked)
        self.issues = ranked
        self.issue_cum = list(accumulate(1 / (r**ZIPF_EXPONENT) for r in range(1, len(ranked) + 1)))
        self.size_cum = list(accumulate(w for *_, w in SIZES))
        # Every session has one interval; the rest go by lognormal weight.
        counts = [1] * sessions
        weights = list(accumulate(rng.lognormvariate(0, 1) for _ in range(sessions)))
        for index in rng.choices(range(sessions), cum_weights=weights, k=events - sessions):
            counts[index] += 1
        self.counts = counts

    def _issue(self) -> int | None:
        if not self.issues or self.rng.random() < UNATTRIBUTED_SHARE:
            return None
        return self.rng.choices(self.issues, cum_weights=self.issue_cum)[0]

    def plans(self, first: int, last: int) -> Iterator[Plan]:
        rng = self.rng
        begin, finish = self.window
        span_max = finish - begin
        for n in self.counts[first:last]:
            runs = [
                max(1000, int(rng.lognormvariate(math.log(RUNNING_MEDIAN_MS), 1.2)))
                for _ in range(n)
            ]
            gaps = [max(1000, int(rng.expovariate(1 / PAUSE_MEAN_MS))) for _ in range(n - 1)]
            total = sum(runs) + sum(gaps)
            if total > span_max:  # a very busy session: squeeze it into the window
                factor = span_max * 0.95 / total
                runs = [max(1000, int(r * factor)) for r in runs]
                gaps = [max(1000, int(g * factor)) for g in gaps]
                total = sum(runs) + sum(gaps)
                if total > span_max:
                    raise CommandError("Too many events per session for --days; add days.")
            start = rng.randint(begin, max(begin, finish - total))
            template, vcpu, memory, _ = rng.choices(SIZES, cum_weights=self.size_cum)[0]
            yield Plan(
                issue_id=self._issue(),
                pool_id=rng.choice(self.pool_ids),
                template=template,
                vcpu=vcpu,
                memory_mb=memory,
                intervals=layout(start, n, runs, gaps),
            )


def _text(value: Any) -> str:
    """One value in COPY's text format. The strings this command writes are its own
    (keys, reasons, timestamps): plain ASCII without tabs, newlines or backslashes."""
    return "\\N" if value is None else str(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Stamps:
    """Epoch milliseconds → what a writer wants: COPY text on PostgreSQL (formatted by hand,
    several times faster than str(datetime)), aware datetimes elsewhere."""

    def __init__(self, text: bool) -> None:
        self.text = text
        self._days: dict[int, str] = {}

    def __call__(self, ms: int) -> Any:
        if not self.text:
            return _dt(ms)
        day, rest = divmod(ms, DAY_MS)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = f"{_dt(day * DAY_MS):%Y-%m-%d} "
        secs, milli = divmod(rest, 1000)
        mins, secs = divmod(secs, 60)
        hours, mins = divmod(mins, 60)
        return f"{prefix}{hours:02d}:{mins:02d}:{secs:02d}.{milli:03d}+00"


class TableWriter:
    """Writes rows of one model with explicit ids: COPY on PostgreSQL, INSERT elsewhere.

    ``columns`` are attnames given for every row; every other concrete field gets its
    default, computed once (a field with neither is an error, so a new NOT NULL column
    fails loudly here instead of in the middle of a load).
    """

    def __init__(
        self, model: type[models.Model], columns: Sequence[str], *, with_ids: bool = True
    ) -> None:
        fields = {f.attname: f for f in model._meta.concrete_fields}
        self.fields = [fields[name] for name in (["id"] if with_ids else []) + list(columns)]
        constants: list[tuple[models.Field[Any, Any], Any]] = []
        for name, field in fields.items():
            if name == "id" or name in columns:
                continue
            value = field.get_default()
            if value is None and not field.null:
                raise CommandError(
                    f"seed_costs does not know how to fill {model._meta.db_table}.{field.column}"
                )
            constants.append((field, value))
        self.table = model._meta.db_table
        self.postgres = connection.vendor == "postgresql"
        self.names = [str(f.column) for f in self.fields] + [str(f.column) for f, _ in constants]
        self.tail = tuple(f.get_db_prep_save(v, connection) for f, v in constants)
        self.text_tail = ""
        if self.postgres and constants:
            self.text_tail = "\t" + "\t".join(self._dumped(v) for v in self.tail)
        self._next_id: int | None = None

    def _dumped(self, value: Any) -> str:
        """A constant (JSON and all) in COPY text, dumped by psycopg itself."""
        if value is None:
            return "\\N"
        from psycopg.adapt import PyFormat, Transformer

        raw = connection.connection
        dumper = Transformer.from_context(raw).get_dumper(value, PyFormat.TEXT)
        return _escape(bytes(dumper.dump(value) or b"").decode())

    def ids(self, n: int) -> list[int]:
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [self.table, n],
                )
                return [row[0] for row in cursor.fetchall()]
            if self._next_id is None:  # SQLite holds the write lock for the transaction
                cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {self.table}")
                self._next_id = cursor.fetchone()[0] + 1
        first, self._next_id = self._next_id, self._next_id + n
        return list(range(first, first + n))

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        """``rows``: ([id,] *columns) tuples of Python values."""
        if not rows:
            return
        names = ", ".join(connection.ops.quote_name(n) for n in self.names)
        with connection.cursor() as cursor:
            if self.postgres:
                tail = self.text_tail + "\n"
                with cursor.cursor.copy(f"COPY {self.table} ({names}) FROM STDIN") as copy:
                    for start in range(0, len(rows), 10_000):
                        copy.write(
                            "".join(
                                "\t".join(map(_text, row)) + tail
                                for row in rows[start : start + 10_000]
                            )
                        )
                return
            marks = ", ".join(["%s"] * len(self.names))
            prepped = [
                tuple(
                    f.get_db_prep_save(v, connection) for f, v in zip(self.fields, row, strict=True)
                )
                + self.tail
                for row in rows
            ]
            cursor.executemany(f"INSERT INTO {self.table} ({names}) VALUES ({marks})", prepped)


SESSION_COLUMNS = [
    "org_id", "issue_id", "pool_id", "provider", "state", "request_id", "sandbox_id",
    "template", "vcpu", "memory_mb", "attempts", "created_at", "state_changed_at",
    "started_at", "ended_at",
]  # fmt: skip
INTERVAL_COLUMNS = ["session_id", "started_at", "ended_at", "closed_reason"]
EVENT_COLUMNS = [
    "org_id", "session_id", "issue_id", "pool_id", "provider", "kind", "quantity_seconds",
    "vcpu", "memory_mb", "rate_card_id", "amount", "currency", "interval_start",
    "interval_end", "occurred_at", "idempotency_key", "created_at",
]  # fmt: skip


class RateCards:
    """The card in effect at an instant (``billing.ledger.rate_card_for``, without a query)."""

    def __init__(self) -> None:
        cards = list(RateCard.objects.filter(provider=PROVIDER).order_by("effective_from"))
        if not cards:
            raise CommandError(f"No {PROVIDER} rate card: run the billing migrations first.")
        self.cards = cards
        self.starts = [_ms(c.effective_from) for c in cards]
        self._prices: dict[tuple[int, int, int], Decimal] = {}

    def per_second(self, vcpu: int, memory_mb: int, card: RateCard) -> Decimal:
        key = (vcpu, memory_mb, card.pk)
        if key not in self._prices:
            self._prices[key] = price_per_second(vcpu, memory_mb, card)
        return self._prices[key]

    def at(self, ms: int) -> RateCard:
        i = bisect.bisect_right(self.starts, ms) - 1
        if i < 0:
            raise CommandError(
                f"No {PROVIDER} rate card in effect at {_dt(ms):%Y-%m-%d}; use fewer --days."
            )
        return self.cards[i]


class Command(BaseCommand):
    help = "Bulk-load a realistic, skewed cost ledger (sessions, intervals, ledger rows)."

    def add_arguments(self, parser: CommandParser) -> None:
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

    def handle(self, *args: Any, **opts: Any) -> None:
        if not settings.DEBUG and not opts["force"]:
            raise CommandError("Refusing to seed synthetic costs with DEBUG off; pass --force.")
        if connection.vendor not in ("postgresql", "sqlite"):
            raise CommandError("seed_costs supports PostgreSQL and SQLite.")
        events, issues, sessions, days = (opts[k] for k in ("events", "issues", "sessions", "days"))
        if sessions < 1 or events < sessions:
            raise CommandError("Need at least one session and at least one event per session.")
        if issues < 0 or days < 1 or opts["pools"] < 1:
            raise CommandError("--issues must be ≥ 0, --days and --pools ≥ 1.")

        started = time.monotonic()
        with transaction.atomic():
            bulk = not opts["with_triggers"] and self.can_skip_triggers()
            summary = self.load(opts, events, issues, sessions, days, bulk)
        elapsed = time.monotonic() - started
        summary.update(seconds=round(elapsed, 2), bulk=bulk)
        self.stdout.write(
            f"Seeded org '{opts['org']}': {events} ledger rows, {sessions} sessions, "
            f"{summary['issues']} issues, total {summary['amount']} USD, in {elapsed:.1f} s "
            f"({events / elapsed:,.0f} rows/s{', triggers on' if not bulk else ''}); "
            f"top 1% of issues carry {summary['top1_share']:.0%} of the cost."
        )
        self.summary = summary

    @staticmethod
    def can_skip_triggers() -> bool:
        """PostgreSQL superuser: row triggers (the rollup, foreign-key checks) can be switched
        off for this transaction only (``SET LOCAL session_replication_role``)."""
        if connection.vendor != "postgresql":
            return False
        with connection.cursor() as cursor:
            cursor.execute("SHOW is_superuser")
            return bool(cursor.fetchone()[0] == "on")

    def load(
        self, opts: dict[str, Any], events: int, issues: int, sessions: int, days: int, bulk: bool
    ) -> dict[str, Any]:
        org, _ = Organization.objects.get_or_create(
            slug=opts["org"], defaults={"name": opts["org"].replace("-", " ").title()}
        )
        prefix = opts["prefix"]
        keys = [f"{prefix}-{i}" for i in range(1, issues + 1)]
        Issue.objects.bulk_create(
            [Issue(org=org, key=k, title=f"Synthetic issue {k}") for k in keys],
            ignore_conflicts=True,
            batch_size=5_000,
        )
        issue_ids = list(Issue.objects.filter(org=org, key__in=keys).values_list("id", flat=True))
        pool_ids = []
        for i in range(1, opts["pools"] + 1):
            pool, _ = CapacityPool.objects.get_or_create(
                org=org,
                name=f"seed-pool-{i}",
                defaults={"provider": PROVIDER, "enabled": False, "order": 1000 + i,
                          "config": {"templateId": "donmai-worker"}},
            )  # fmt: skip
            pool_ids.append(pool.pk)
        cards = RateCards()
        if bulk:
            self.skip_triggers(org.pk, issue_ids, pool_ids, [c.pk for c in cards.cards])

        now_ms = _ms(timezone.now().replace(microsecond=0)) - 60_000
        rng = random.Random(opts["seed"])
        gen = Generator(
            rng,
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
            session_ids = self.write_chunk(org.pk, plans, writers, cards, posted)
            if bulk:
                self.add_to_rollup(session_ids)
        if bulk:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = origin")
            self.check_references(org.pk)
        return self.verify(org, issue_ids)

    @staticmethod
    def skip_triggers(
        org_id: int, issue_ids: list[int], pool_ids: list[int], cards: list[int]
    ) -> None:
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
        self,
        org_id: int,
        plans: list[Plan],
        writers: tuple[TableWriter, TableWriter, TableWriter],
        cards: RateCards,
        posted: datetime,
    ) -> list[int]:
        sessions_w, intervals_w, events_w = writers
        stamp = Stamps(text=sessions_w.postgres)
        posted_at = stamp(_ms(posted))
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
                # = exact_seconds(end - start) (whole milliseconds), and the amount is
                # billing.ledger.price(seconds, vcpu, memory, card) with its per-second
                # price computed once per (vcpu, memory, card).
                seconds = Decimal(b - a).scaleb(-3)
                amount = (seconds * cards.per_second(plan.vcpu, plan.memory_mb, card)).quantize(
                    AMOUNT_QUANTUM
                )
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

    @staticmethod
    def add_to_rollup(session_ids: list[int]) -> None:
        """What the rollup trigger does per row, once per group for these new sessions' rows:
        billing.triggers' own rebuild query, limited to them and added to what is there."""
        rollup = triggers.ROLLUP
        group_by = f"FROM {triggers.LEDGER} GROUP BY"
        rebuild = next(sql for sql in triggers.REBUILD["postgresql"] if group_by in sql)
        sql = rebuild.replace(
            group_by, f"FROM {triggers.LEDGER} WHERE session_id = ANY(%s) GROUP BY"
        )
        sql += f"""
            ON CONFLICT {triggers.CONFLICT_TARGET} DO UPDATE SET
                amount = {rollup}.amount + EXCLUDED.amount,
                quantity_seconds = {rollup}.quantity_seconds + EXCLUDED.quantity_seconds,
                vcpu_seconds = {rollup}.vcpu_seconds + EXCLUDED.vcpu_seconds,
                entries = {rollup}.entries + EXCLUDED.entries"""
        with connection.cursor() as cursor:
            cursor.execute(sql, [session_ids])

    @staticmethod
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
                    raise CommandError(f"{broken} {what} point at rows that do not exist.")

    def verify(self, org: Organization, issue_ids: list[int]) -> dict[str, Any]:
        """The ledger and the rollup agree for the org (else roll everything back)."""
        ledger = CostEvent.objects.filter(org=org).aggregate(
            amount=models.Sum("amount"), n=models.Count("id")
        )
        rollup = DailyCost.objects.filter(org=org).aggregate(
            amount=models.Sum("amount"), n=models.Sum("entries")
        )
        if (ledger["amount"], ledger["n"]) != (rollup["amount"], rollup["n"]):
            raise CommandError(f"Rollup disagrees with the ledger: {ledger} vs {rollup}")
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
