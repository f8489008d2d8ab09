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

Five queries whatever the number of sessions; Python merges them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Sum
from django.db.models.functions import TruncHour

from billing.analytics import CostFilter, _decimal, _sessions, ledger_rows
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


def outcome_report(f: CostFilter) -> OutcomeReport:
    # 1. Spend per (session, pool) in the filter.
    spend = ledger_rows(f).values_list("session_id", "pool_id").annotate(a=Sum("amount")).order_by()
    per_session: dict[int | None, Decimal] = defaultdict(lambda: ZERO)
    per_pool_session: list[tuple[int | None, int | None, Decimal]] = []
    for session_id, pool_id, amount in spend:
        value = _decimal(amount, AMOUNT_QUANTUM)
        per_session[session_id] += value
        per_pool_session.append((session_id, pool_id, value))

    # 2. Those sessions' outcomes, issues and order.
    info: dict[int, tuple[str, int | None, Any]] = {}
    rows = (
        Session.objects.filter(pk__in=ledger_rows(f).values("session_id"))
        .annotate(outcome=outcomes.outcome_expression())
        .values_list("pk", "outcome", "issue_id", "created_at")
    )
    for pk, outcome, issue_id, created_at in rows:
        info[pk] = (outcome or RUNNING, issue_id, created_at)

    def outcome_of(session_id: int | None) -> str:
        return info[session_id][0] if session_id in info else NO_SESSION

    by_outcome: dict[str, OutcomeRow] = {}
    for session_id, amount in per_session.items():
        row = by_outcome.setdefault(outcome_of(session_id), OutcomeRow(outcome_of(session_id)))
        row.sessions += 1 if session_id is not None else 0
        row.amount += amount
    pool_names = dict(CapacityPool.objects.filter(org_id=f.org_id).values_list("pk", "name"))
    pools: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for session_id, pool_id, amount in per_pool_session:
        name = pool_names.get(pool_id, "No pool") if pool_id else "No pool"
        pools[name][outcome_of(session_id)] += amount

    # Retry tax: bad ends before the issue's last good end.
    by_issue: dict[int, list[tuple[Any, str, int]]] = defaultdict(list)
    for pk, (outcome, issue, created_at) in info.items():
        if issue is not None:
            by_issue[issue].append((created_at, outcome, pk))
    # The issue's good ends are looked up over all its sessions (any pool, any time): a
    # retry billed to this pool or period still cost the issue a success elsewhere.
    bad_issues = [i for i, ss in by_issue.items() if any(o in BAD for _, o, _ in ss)]
    last_good = dict(
        Session.objects.filter(org_id=f.org_id, issue_id__in=bad_issues)
        .annotate(outcome=outcomes.outcome_expression())
        .filter(outcome__in=sorted(GOOD))
        .values_list("issue_id")
        .annotate(last=Max("created_at"))
        .order_by()
    )
    taxed: dict[int, list[int]] = {}
    for issue_id, sessions in by_issue.items():
        good_at = last_good.get(issue_id)
        if good_at is None:
            continue
        bad = [pk for created, outcome, pk in sessions if outcome in BAD and created < good_at]
        if bad:
            taxed[issue_id] = bad

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
        (
            RetryTax(keys.get(i, "?"), len(pks), sum((per_session[p] for p in pks), ZERO))
            for i, pks in taxed.items()
        ),
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
