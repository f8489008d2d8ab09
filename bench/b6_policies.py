"""B6: one lifecycle-policy pass over 1,000 live sessions, against a plain query of them.

    python -m bench.b6_policies                    # SQLite file in a temp dir, 1,000 sessions
    python -m bench.b6_policies --db postgres://postgres@127.0.0.1:5432/rensei_bench_b6
    python -m bench.b6_policies --sessions 200 --runs 3

One pool on the fake provider with all three policies on (idle pause after 10 min, paused
terminate after 30 days, age limit 720 h); ``--sessions`` running sessions, each with its
sandbox in the fake cloud at 50 % CPU and an open interval started an hour ago, so the idle
pass asks every one of them for its metrics (121 samples over the 10-minute window) and
none is paused: the steady state of a busy fleet, the same on every run. The pass is timed
against ``list(Session.objects.filter(pool=…, state="running"))`` over the same rows (the
least any pass must do). Figures: median of ``--runs`` runs of each, their ratio, the
queries of one pass. The fake provider answers in memory, so the figure is the control
plane's own cost; a real provider adds one metrics call per running session.

A PostgreSQL ``--db`` must name a database this run may create and drop. Each run writes
``bench/b6_latest.json``; ``report_lines`` renders it as the B6 section of
docs/performance.md (``make bench`` keeps it when it rewrites the page).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.standalone import standalone_database

LATEST = Path(__file__).resolve().parent / "b6_latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.b6_policies")
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--db", default="", help="database URL (default: a temp SQLite file)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with standalone_database("b6", args.db) as connection:
        return _measure(args, connection)


def _measure(args: argparse.Namespace, connection: Any) -> dict[str, Any]:
    from datetime import timedelta

    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from pools.models import CapacityPool
    from pools.providers.fake import FakeSandbox, registered
    from rensei.models import Organization
    from sessions import policies
    from sessions.models import RunningInterval, Session, SessionState

    now = timezone.now()
    started = now - timedelta(hours=1)
    with registered() as cloud:
        org = Organization.objects.create(name="Bench B6", slug="bench-b6")
        config = {
            "templateId": "donmai-worker",
            "idlePauseMinutes": 10,
            "pausedTerminateDays": 30,
            "maxSessionHours": 720,
        }
        pool = CapacityPool.objects.create(org=org, name="b6", provider="fake", config=config)
        sessions = Session.objects.bulk_create(
            Session(
                org=org,
                pool=pool,
                provider="fake",
                state=SessionState.RUNNING,
                sandbox_id=f"fake-b6-{i:05d}",
                vcpu=2,
                memory_mb=1024,
                started_at=started,
            )
            for i in range(args.sessions)
        )
        RunningInterval.objects.bulk_create(
            RunningInterval(session=s, started_at=started) for s in sessions
        )
        for s in sessions:
            cloud.sandboxes[s.sandbox_id] = FakeSandbox(
                s.sandbox_id, "donmai-worker", {}, {}, started, cpu_pct=50.0
            )

        def one_pass() -> dict[str, int]:
            return policies.apply_policies(now=now)

        def plain() -> int:
            return len(list(Session.objects.filter(pool=pool, state=SessionState.RUNNING)))

        with CaptureQueriesContext(connection) as ctx:
            acted = one_pass()
        assert not any(acted.values()), acted  # busy boxes: nothing to do, every run alike
        pass_s = [_timed(one_pass) for _ in range(args.runs)]
        plain_s = [_timed(plain) for _ in range(args.runs)]
    vendor = connection.vendor
    median_pass, median_plain = statistics.median(pass_s), statistics.median(plain_s)
    return {
        "database": vendor,
        "sessions": args.sessions,
        "runs": args.runs,
        "pass_ms": round(median_pass * 1000, 1),
        "plain_query_ms": round(median_plain * 1000, 2),
        "ratio": round(median_pass / median_plain, 1),
        "per_session_ms": round(median_pass * 1000 / args.sessions, 3),
        "queries_per_pass": len(ctx.captured_queries),
        "pass_runs_ms": [round(s * 1000, 1) for s in pass_s],
        "load_average": round(os.getloadavg()[0], 2),  # other work on the same cores
    }


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report_lines() -> list[str]:
    """The B6 section of docs/performance.md, from the last run (none before a first run)."""
    if not LATEST.exists():
        return []
    r = json.loads(LATEST.read_text())
    return [
        "## B6: lifecycle-policy pass over live sessions",
        "",
        f"One beat pass of the pools' lifecycle policies (`sessions/policies.py`) over "
        f"{r['sessions']:,} running sessions on the fake provider (each asked for its metrics: "
        "a busy fleet, nothing to pause), against a plain query of the same rows. "
        f"{r['database']}, median of {r['runs']} runs, measured {r['measured_at']} with a "
        f"1-minute load average of {r.get('load_average', '?')} on this machine's cores; run "
        "alone with `.venv/bin/python -m bench.b6_policies` (`--db` for PostgreSQL).",
        "",
        "| pass | plain query | ratio | per session | queries per pass |",
        "|---|---|---|---|---|",
        f"| {r['pass_ms']} ms | {r['plain_query_ms']} ms | {r['ratio']}× | "
        f"{r['per_session_ms']} ms | {r['queries_per_pass']} |",
        "",
        "The queries grow by one per 500 running sessions only (pools, running candidates, "
        "paused ones, old ones, and the batched UPDATE that stores each session's latest CPU "
        "sample for the sessions list); the time grows by one metrics call, one window check "
        "and one row of that UPDATE per running session. The fake provider answers in "
        "memory: against E2B each session adds one metrics round trip, so a pool of 1,000 "
        "running sessions makes 1,000 calls a minute.",
        "",
    ]


if __name__ == "__main__":
    result = main(sys.argv[1:])
    from datetime import UTC, datetime

    result["measured_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    LATEST.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
