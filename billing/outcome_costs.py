"""Cost per outcome: what a report's spend bought, by how each session ended.

- **Spend by outcome**: the ledger rows of a Cost per Issue filter, summed by their
  session's outcome (``sessions.outcomes``: terminated, failed, lost, interrupted, expired by
  a pool's policy, cancelled; ``running`` for sessions still live; ``no session`` for rows
  without one), overall and per pool. The outcomes add up to the page's total.
- **Retry tax**: on each issue, the cost of sessions that ended badly (failed, lost,
  interrupted, expired) before a later session of the same issue ended well. The control
  plane never learns "succeeded" (only the agent knows); it counts a session ended on
  request after it ran (``terminated``) as the issue's good end, and ``succeeded`` when
  Rensei's platform reports it.
- **Possible runaway loops**: issues with more than N sandboxes started in one UTC hour of
  the period (``RENSEI_RUNAWAY_SANDBOXES_PER_HOUR``, default 6).

Four queries whatever the number of sessions, the spend grouped in the database.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncHour

from billing.analytics import CostFilter, _decimal, _sessions, ledger_rows, report_cursor
from billing.models import AMOUNT_QUANTUM
from pools.models import CapacityPool
from sessions import outcomes
from sessions.models import Issue, Session

ZERO = Decimal(0)
RUNNING = "running"
NO_SESSION = "no session"
BAD = frozenset({outcomes.FAILED, outcomes.LOST, outcomes.INTERRUPTED, outcomes.EXPIRED})
GOOD = frozenset({outcomes.SUCCEEDED, outcomes.TERMINATED})
ORDER = [*outcomes.OUTCOMES, RUNNING, NO_SESSION]
DEFAULT_RUNAWAY = 6


def runaway_threshold() -> int:
    return int(getattr(settings, "RENSEI_RUNAWAY_SANDBOXES_PER_HOUR", DEFAULT_RUNAWAY))


@dataclass
class OutcomeRow:
    outcome: str
    sessions: int = 0
    amount: Decimal = ZERO


@dataclass
class RetryTax:
    issue_key: str
    sessions: int
    amount: Decimal


@dataclass
class Runaway:
    issue_key: str
    hour: datetime
    sandboxes: int


@dataclass
class OutcomeReport:
    by_outcome: list[OutcomeRow]
    # (pool name, amount per outcome in ``outcomes`` order (None: nothing), total)
    by_pool: list[tuple[str, list[Decimal | None], Decimal]]
    retry_tax: Decimal
    retry_by_issue: list[RetryTax]
    runaways: list[Runaway]
    threshold: int
    outcomes: list[str] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((r.amount for r in self.by_outcome), ZERO)


def _hour(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _sql(qs: QuerySet[Any]) -> tuple[str, tuple[Any, ...]]:
    sql, params = qs.query.sql_with_params()
    return sql, tuple(params)


def _grouped(f: CostFilter) -> list[tuple[Any, ...]]:
    """The range's spend by outcome (with its sessions), by pool and outcome, and the retry
    tax per issue, grouped in the database: one query whatever the number of sessions (a
    period can hold hundreds of thousands of billed sessions). Rows are
    ``(part, outcome, pool_id, issue_id, sessions, amount)``."""
    spend, p1 = _sql(
        ledger_rows(f).values_list("session_id", "pool_id").annotate(a=Sum("amount")).order_by()
    )
    sessions = Session.objects.filter(org_id=f.org_id).annotate(
        outcome=outcomes.outcome_expression()
    )
    # Only the sessions billed in the range (``sp`` below) get their outcome worked out.
    billed = sessions.filter(pk__in=RawSQL("SELECT session_id FROM sp", ()))
    outcome_of, p2 = _sql(billed.values_list("pk", "outcome", "issue_id", "created_at").order_by())
    # The issue's good ends over all its sessions (any pool, any time): a retry billed to
    # this pool or period still cost the issue a success elsewhere.
    good, p3 = _sql(
        sessions.filter(outcome__in=sorted(GOOD))
        .values_list("issue_id")
        .annotate(last=Max("created_at"))
        .order_by()
    )
    bad = ", ".join(f"'{o}'" for o in sorted(BAD))
    sql = f"""
        WITH sp AS ({spend}), j AS (
            SELECT sp.session_id, sp.pool_id, sp.a, se.issue_id, se.created_at,
                   CASE WHEN sp.session_id IS NULL THEN '{NO_SESSION}'
                        ELSE COALESCE(se.outcome, '{RUNNING}') END AS outcome
            FROM sp LEFT JOIN ({outcome_of}) se ON se.pk = sp.session_id
        ), ps AS (
            SELECT session_id, outcome, issue_id, created_at, SUM(a) AS a FROM j
            WHERE outcome IN ({bad}) AND issue_id IS NOT NULL
            GROUP BY session_id, outcome, issue_id, created_at
        )
        SELECT 1 AS part, outcome, CAST(NULL AS BIGINT) AS pool_id,
               CAST(NULL AS BIGINT) AS issue_id,
               COUNT(DISTINCT session_id) AS n, SUM(a) AS a
        FROM j GROUP BY outcome
        UNION ALL
        SELECT 2, outcome, pool_id, NULL, NULL, SUM(a) FROM j GROUP BY outcome, pool_id
        UNION ALL
        SELECT 3, NULL, NULL, ps.issue_id, COUNT(*), SUM(ps.a)
        FROM ps JOIN ({good}) g ON g.issue_id = ps.issue_id
        WHERE ps.created_at < g.last GROUP BY ps.issue_id
    """
    with report_cursor() as cursor:
        cursor.execute(sql, (*p1, *p2, *p3))
        return cursor.fetchall()


def outcome_report(f: CostFilter) -> OutcomeReport:
    by_outcome: dict[str, OutcomeRow] = {}
    pools: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    taxed: dict[int, tuple[int, Decimal]] = {}
    pool_names = dict(CapacityPool.objects.filter(org_id=f.org_id).values_list("pk", "name"))
    for part, outcome, pool_id, issue_id, n, amount in _grouped(f):
        value = _decimal(amount, AMOUNT_QUANTUM)
        if part == 1:
            by_outcome[outcome] = OutcomeRow(outcome, int(n), value)
        elif part == 2:
            name = pool_names.get(pool_id, "No pool") if pool_id else "No pool"
            pools[name][outcome] += value
        else:
            taxed[issue_id] = (int(n), value)

    # 3. Runaway loops: sandboxes started per issue and UTC hour in the period.
    threshold = runaway_threshold()
    bursts = (
        Session.objects.filter(
            _sessions(f),
            issue__isnull=False,
            started_at__gte=f.period.start,
            started_at__lt=f.period.end,
        )
        .annotate(hour=TruncHour("started_at"))
        .values_list("issue_id", "hour")
        .annotate(n=Count("id"))
        .filter(n__gt=threshold)
        .order_by("-n", "issue_id", "hour")[:100]
    )
    bursts_list = list(bursts)
    wanted = set(taxed) | {issue_id for issue_id, _, _ in bursts_list}
    keys = dict(Issue.objects.filter(org_id=f.org_id, pk__in=wanted).values_list("pk", "key"))
    retry = sorted(
        (RetryTax(keys.get(i, "?"), n, amount) for i, (n, amount) in taxed.items()),
        key=lambda r: (-r.amount, r.issue_key),
    )
    present = [o for o in ORDER if o in by_outcome]
    return OutcomeReport(
        by_outcome=[by_outcome[o] for o in present],
        by_pool=[
            (name, [values.get(o) for o in present], sum(values.values(), ZERO))
            for name, values in sorted(pools.items())
        ],
        retry_tax=sum((r.amount for r in retry), ZERO),
        retry_by_issue=retry,
        runaways=[Runaway(keys.get(i, "?"), _hour(h), n) for i, h, n in bursts_list],
        threshold=threshold,
        outcomes=present,
    )
