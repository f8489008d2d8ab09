"""B8: one budgets pass over 10,000 live sessions, against one plain aggregate of them.

    python -m bench.b8_budgets                    # SQLite file in a temp dir, 10,000 sessions
    python -m bench.b8_budgets --db postgres://postgres@127.0.0.1:5432/rensei_bench_b8
    python -m bench.b8_budgets --sessions 2000 --runs 3

One org with ``--sessions`` running sessions spread over 5 pools and 2,000 issues, each with
an open interval started an hour ago, and the budgets a large org would set: the org's
monthly budget, one per pool, the default per-issue budget (so every live issue is a figure
of its own) and 100 issues with their own. Every amount is far above the spend, so the pass
finds every threshold uncrossed and nothing to enforce: the steady state, the same on every
run. The pass (``budgets.sweep.evaluate_org``: the figures, the alerts already fired, the
dashboard snapshots) is timed against one plain aggregate over the same rows
(``Session.objects.filter(org=…, state="running").aggregate(Count, Sum("vcpu"))``).
Figures: median of ``--runs`` runs of each, their ratio, the queries of one pass.

A PostgreSQL ``--db`` must name a database this run may create and drop. Each run writes
``bench/b8_latest.json``; ``report_lines`` renders it as the B8 section of
docs/performance.md (``make bench`` keeps it when it rewrites the page).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.b6_policies import _timed
from bench.standalone import standalone_database

LATEST = Path(__file__).resolve().parent / "b8_latest.json"
POOLS = 5
ISSUES = 2000
OWN_BUDGETS = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.b8_budgets")
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--db", default="", help="database URL (default: a temp SQLite file)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with standalone_database("b8", args.db) as connection:
        return _measure(args, connection)


def _measure(args: argparse.Namespace, connection: Any) -> dict[str, Any]:
    from datetime import timedelta
    from decimal import Decimal

    from django.db.models import Count, Sum
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from budgets import sweep
    from budgets.models import Budget, Scope
    from pools.models import CapacityPool
    from rensei.models import Organization
    from sessions.models import Issue, RunningInterval, Session, SessionState

    now = timezone.now()
    started = now - timedelta(hours=1)
    org = Organization.objects.create(name="Bench B8", slug="bench-b8")
    pools = [
        CapacityPool.objects.create(org=org, name=f"b8-{i}", provider="e2b", config={})
        for i in range(POOLS)
    ]
    issues = Issue.objects.bulk_create(
        Issue(org=org, key=f"B8-{i}") for i in range(min(ISSUES, args.sessions))
    )
    sessions = Session.objects.bulk_create(
        Session(
            org=org,
            pool=pools[i % POOLS],
            issue=issues[i % len(issues)],
            provider="e2b",
            state=SessionState.RUNNING,
            vcpu=2,
            memory_mb=1024,
            started_at=started,
        )
        for i in range(args.sessions)
    )
    RunningInterval.objects.bulk_create(
        RunningInterval(session=s, started_at=started) for s in sessions
    )
    huge = Decimal("900000000")
    Budget.objects.create(org=org, scope=Scope.ORG, amount_usd=huge)
    Budget.objects.create(org=org, scope=Scope.ISSUE, amount_usd=huge)
    Budget.objects.bulk_create(
        Budget(org=org, scope=Scope.POOL, pool=p, amount_usd=huge) for p in pools
    )
    Budget.objects.bulk_create(
        Budget(org=org, scope=Scope.ISSUE, issue=issue, amount_usd=huge)
        for issue in issues[:OWN_BUDGETS]
    )

    def one_pass() -> dict[str, int]:
        return sweep.evaluate_org(org.pk, now)

    def plain() -> Any:
        return Session.objects.filter(org=org, state=SessionState.RUNNING).aggregate(
            n=Count("id"), vcpu=Sum("vcpu")
        )

    with CaptureQueriesContext(connection) as ctx:
        acted = one_pass()
    assert not any(acted.values()), acted  # far under every budget: nothing to do
    pass_s = [_timed(one_pass) for _ in range(args.runs)]
    plain_s = [_timed(plain) for _ in range(args.runs)]
    median_pass, median_plain = statistics.median(pass_s), statistics.median(plain_s)
    return {
        "database": connection.vendor,
        "sessions": args.sessions,
        "issues": len(issues),
        "budgets": Budget.objects.filter(org=org).count(),
        "runs": args.runs,
        "pass_ms": round(median_pass * 1000, 1),
        "plain_query_ms": round(median_plain * 1000, 2),
        "ratio": round(median_pass / median_plain, 1),
        "per_session_ms": round(median_pass * 1000 / args.sessions, 4),
        "queries_per_pass": len(ctx.captured_queries),
        "pass_runs_ms": [round(s * 1000, 1) for s in pass_s],
        "load_average": round(os.getloadavg()[0], 2),  # other work on the same cores
    }


def report_lines() -> list[str]:
    """The B8 section of docs/performance.md, from the last run (none before a first run)."""
    if not LATEST.exists():
        return []
    r = json.loads(LATEST.read_text())
    return [
        "## B8: budgets pass over live sessions",
        "",
        f"One beat pass of the budgets (`budgets/sweep.py`: every budget's consumption = the "
        f"ledger + each open interval priced now, the forecasts and projections, the alerts "
        f"already fired, the dashboard snapshots) over {r['sessions']:,} running sessions in "
        f"{r['issues']:,} issues with {r['budgets']} budgets (the org's, one per pool, the "
        "default per-issue budget and 100 issues' own; nothing crossed, nothing to enforce), "
        "against one plain aggregate query over the same rows. "
        f"{r['database']}, median of {r['runs']} runs, measured {r['measured_at']} with a "
        f"1-minute load average of {r.get('load_average', '?')} on this machine's cores; run "
        "alone with `.venv/bin/python -m bench.b8_budgets` (`--db` for PostgreSQL).",
        "",
        "| pass | plain aggregate | ratio | per session | queries per pass |",
        "|---|---|---|---|---|",
        f"| {r['pass_ms']} ms | {r['plain_query_ms']} ms | {r['ratio']}× | "
        f"{r['per_session_ms']} ms | {r['queries_per_pass']} |",
        "",
        "The queries do not grow with the sessions: the budgets, the month's rollup per pool, "
        "the live issues' ledger, the open intervals, the rate cards, the enforcement states, "
        "the fired alerts, the month's rollup per day and one snapshot UPDATE per org or pool "
        "budget. The time grows by pricing one open interval and one figure per live issue. "
        "The pass reads no provider: pausing a session is a request the worker carries out.",
        "",
    ]


if __name__ == "__main__":
    result = main(sys.argv[1:])
    from datetime import UTC, datetime

    result["measured_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    LATEST.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
