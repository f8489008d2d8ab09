"""A small cost history for org A, written through the same functions the jobs use.

Each session's sandbox ran in one closed interval (``sessions.intervals`` opens and closes
it; closing emits the ledger row), then the session was terminated. Times are whole hours on
past UTC days, relative to today, so the default "Last 30 days" shows all of it and
"Last 7 days" shows part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Sum

from billing.models import CostEvent
from pools.models import CapacityPool
from rensei.models import Organization
from sessions.models import Session
from tests.billing.helpers import finish, make_issue, make_session, run
from tests.factories import CapacityPoolFactory
from tests.sessions_engine.conftest import ensure_rate_cards


@dataclass
class CostHistory:
    main: CapacityPool
    spare: CapacityPool
    sessions: dict[str, Session]

    @staticmethod
    def amount(**filters: object) -> Decimal:
        total = CostEvent.objects.filter(**filters).aggregate(s=Sum("amount"))["s"]
        return Decimal(total or 0)


def _at(days_ago: int, hour: int, minute: int = 0) -> datetime:
    day = datetime.now(UTC).date() - timedelta(days=days_ago)
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def cost_history(org: Organization) -> CostHistory:
    ensure_rate_cards()
    main = CapacityPoolFactory.create(org=org, name="e2b-main", order=0)
    spare = CapacityPoolFactory.create(org=org, name="e2b-spare", order=1)
    eng1 = make_issue(org, "ENG-1", "Flaky checkout test")
    eng2 = make_issue(org, "ENG-2", "Upgrade the ORM")
    eng3 = make_issue(org, "ENG-3", "Nightly export")
    # name: (issue, pool, vCPU, MiB, days ago, start hour, end hour)
    plan = {
        "eng1-recent": (eng1, main, 8, 16384, 2, 9, 15),
        "eng1-old": (eng1, spare, 2, 1024, 12, 10, 12),
        "eng2": (eng2, main, 4, 8192, 3, 13, 16),
        "eng3": (eng3, main, 2, 2048, 20, 8, 12),
        "unattributed": (None, spare, 2, 1024, 1, 10, 11),
    }
    sessions = {}
    for name, (issue, pool, vcpu, memory, days_ago, start, end) in plan.items():
        session = make_session(org, issue=issue, pool=pool, vcpu=vcpu, memory_mb=memory)
        run(session, _at(days_ago, start), _at(days_ago, end), reason="terminate")
        finish(session, _at(days_ago, end))
        sessions[name] = session
    return CostHistory(main=main, spare=spare, sessions=sessions)
