"""B9: reconciling one day of an org with 10,000 sessions (billing/recon_runs.py).

    python -m bench.b9_reconcile                  # SQLite file in a temp dir, 10,000 sessions
    python -m bench.b9_reconcile --db postgres://postgres@127.0.0.1:5432/rensei_bench_b9
    python -m bench.b9_reconcile --sessions 2000 --runs 3

One org, ``--sessions`` sessions that each ran twice on the day (two closed intervals and
their two ledger rows), a tenth of them still running at the end of the day with their
sandboxes listed by the provider, plus 50 sandboxes the provider runs with no interval of
ours (phantoms), 50 open intervals whose sandbox it does not list (ghosts) and 50 reversed
rows (drift). The provider's list is handed to the run as already listed, so the figure is
the comparison and its writes, not E2B's latency (one paginated list call per pool kind).
Figures: median of ``--runs`` runs of ``reconcile_day``, the queries of one run.

Each run writes ``bench/b9_latest.json``; ``report_lines`` renders it as the B9 section of
docs/performance.md (``make bench`` keeps it when it rewrites the page).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

from bench.b6_policies import _timed
from bench.standalone import standalone_database

LATEST = Path(__file__).resolve().parent / "b9_latest.json"
SEEDED = 50  # phantoms, ghosts and reversed rows each


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.b9_reconcile")
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--db", default="", help="database URL (default: a temp SQLite file)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with standalone_database("b9", args.db) as connection:
        result = _measure(args, connection)
    LATEST.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def _measure(args: argparse.Namespace, connection: Any) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from billing.ledger import price, rate_card_for
    from billing.models import CostEvent
    from billing.recon_runs import reconcile_day
    from pools.models import CapacityPool
    from pools.providers.base import SandboxInfo
    from rensei.models import Organization
    from sessions.models import Issue, RunningInterval, Session, SessionState

    day = (timezone.now() - timedelta(days=1)).date()
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    org = Organization.objects.create(name="Bench B9", slug="bench-b9")
    pool = CapacityPool.objects.create(org=org, name="b9", provider="e2b", config={})
    issues = Issue.objects.bulk_create(Issue(org=org, key=f"B9-{i}") for i in range(1000))
    sessions = Session.objects.bulk_create(
        Session(
            org=org,
            pool=pool,
            issue=issues[i % len(issues)],
            provider="e2b",
            state=SessionState.RUNNING if i % 10 == 0 else SessionState.TERMINATED,
            sandbox_id=f"sb-{i}",
            vcpu=2,
            memory_mb=1024,
            started_at=start + timedelta(seconds=i),
        )
        for i in range(args.sessions)
    )
    card = rate_card_for("e2b", start)
    intervals, rows = [], []
    for i, s in enumerate(sessions):
        a = start + timedelta(seconds=i % 3600)
        for n, (b, e) in enumerate(
            ((a, a + timedelta(minutes=20)), (a + timedelta(hours=2), a + timedelta(hours=3)))
        ):
            intervals.append(
                RunningInterval(session=s, started_at=b, ended_at=e, closed_reason="pause")
            )
            seconds = (e - b).total_seconds()
            q = Decimal(int(seconds))
            rows.append(
                CostEvent(
                    org=org,
                    session=s,
                    issue_id=s.issue_id,
                    pool=pool,
                    provider="e2b",
                    quantity_seconds=q,
                    vcpu=2,
                    memory_mb=1024,
                    rate_card=card,
                    amount=price(q, 2, 1024, card),
                    interval_start=b,
                    interval_end=e,
                    occurred_at=e,
                    idempotency_key=f"b9:{s.pk}:{n}",
                )
            )
    RunningInterval.objects.bulk_create(intervals, batch_size=2000)
    CostEvent.objects.bulk_create(rows, batch_size=2000)
    running = [s for i, s in enumerate(sessions) if i % 10 == 0]
    late = end - timedelta(hours=1)
    RunningInterval.objects.bulk_create(
        RunningInterval(session=s, started_at=late) for s in running
    )
    listed = [
        SandboxInfo(
            s.sandbox_id,
            "t",
            "running",
            {"rensei_org": org.slug, "rensei_session": str(s.pk)},
            started_at=s.started_at,
        )
        for s in running[SEEDED:]  # the first SEEDED running ones are ghosts
    ]
    listed += [
        SandboxInfo(
            f"phantom-{i}",
            "t",
            "running",
            {"rensei_org": org.slug},
            started_at=late,
            vcpu=2,
            memory_mb=1024,
        )
        for i in range(SEEDED)
    ]
    for row in CostEvent.objects.filter(org=org, idempotency_key__endswith=":0").order_by("pk")[
        :SEEDED
    ]:
        CostEvent.objects.create(
            org=org,
            session_id=row.session_id,
            issue_id=row.issue_id,
            pool=pool,
            provider="e2b",
            quantity_seconds=-row.quantity_seconds,
            vcpu=2,
            memory_mb=1024,
            rate_card=card,
            amount=-row.amount,
            interval_start=row.interval_start,
            interval_end=row.interval_end,
            occurred_at=row.occurred_at,
            idempotency_key=f"reversal:{row.pk}",
            reverses=row,
            reason="bench",
        )
    listings = {"e2b": listed}
    if connection.vendor == "postgresql":
        # As autovacuum soon would after a bulk load: the planner needs the tables' sizes.
        with connection.cursor() as cursor:
            for table in (
                "agent_sessions_session",
                "agent_sessions_runninginterval",
                "billing_costevent",
            ):
                cursor.execute(f"ANALYZE {table}")

    def one_run() -> Any:
        return reconcile_day(org, day, listings=listings, now=end)

    with CaptureQueriesContext(connection) as ctx:
        first = one_run()
    found = {k: first.found.filter(kind=k).count() for k in ("phantom", "ghost", "drift")}
    assert found == {"phantom": SEEDED, "ghost": SEEDED, "drift": SEEDED}, found
    runs_s = [_timed(one_run) for _ in range(args.runs)]
    median = statistics.median(runs_s)
    return {
        "database": connection.vendor,
        "sessions": args.sessions,
        "ledger_rows": CostEvent.objects.filter(org=org).count(),
        "intervals": RunningInterval.objects.filter(session__org=org).count(),
        "listed": len(listed),
        "found": found,
        "runs": args.runs,
        "run_ms": round(median * 1000, 1),
        "per_session_ms": round(median * 1000 / args.sessions, 4),
        "queries_per_run": len(ctx.captured_queries),
        "run_runs_ms": [round(s * 1000, 1) for s in runs_s],
        "measured_at": timezone.now().strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": round(os.getloadavg()[0], 2),  # other work on the same cores
    }


def report_lines() -> list[str]:
    """The B9 section of docs/performance.md, from the last run (none before a first run)."""
    if not LATEST.exists():
        return []
    r = json.loads(LATEST.read_text())
    return [
        "## B9: reconciling one day of an org",
        "",
        f"One reconciliation run (`billing/recon_runs.py`: the day's ledger per session, its "
        f"closed intervals priced as the ledger prices them, the open intervals against the "
        f"provider's list of sandboxes, the findings written) for an org with "
        f"{r['sessions']:,} sessions on the day ({r['ledger_rows']:,} ledger rows, "
        f"{r['intervals']:,} intervals, {r['listed']:,} sandboxes listed), with "
        f"{r['found']['phantom']} phantoms, {r['found']['ghost']} ghosts and "
        f"{r['found']['drift']} drifting sessions seeded and found. The provider's list is "
        f"handed over as listed (E2B's own latency is not in the figure), and the tables are "
        f"analysed after the load, as autovacuum would. {r['database']}, "
        f"median of {r['runs']} runs, measured {r['measured_at']} with a 1-minute load "
        f"average of {r.get('load_average', '?')} on this machine's cores; run alone with "
        "`.venv/bin/python -m bench.b9_reconcile` (`--db` for PostgreSQL).",
        "",
        "| run | per session | queries per run |",
        "|---|---|---|",
        f"| {r['run_ms']} ms | {r['per_session_ms']} ms | {r['queries_per_run']} |",
        "",
    ]


if __name__ == "__main__":
    main()
