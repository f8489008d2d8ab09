"""``make bench`` / ``python -m bench``: run the benchmarks, write the results and the page.

    python -m bench                 # everything, full size; rewrites docs/performance.md
    python -m bench --only b2,b3    # some of them (results JSON only)
    python -m bench --quick         # small data, fewer runs: a smoke run of the harness

It creates its own PostgreSQL database (``rensei_bench``, dropped at the end unless
``--keep-db``), uses Redis database 7 on loopback, runs gunicorn, Celery workers and the E2B
emulator as child processes on 127.0.0.1, and stops every one of them on the way out. The
production settings are used (``DEBUG=false``), with the HTTPS-only switches off because
everything is plain HTTP on loopback.

Results: ``bench/results/<UTC time>.json`` (git-ignored) every time; a full run also writes
``bench/latest.json`` and regenerates ``docs/performance.md`` from it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from bench.common import ROOT, Context, Proc, cpu_probe_ms, log, machine, start_gunicorn

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/rensei_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/7"
ALL = ("b1", "b2", "b3", "b4")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(ALL), help="comma-separated: b1,b2,b3,b4")
    p.add_argument("--quick", action="store_true", help="small data and few runs (smoke run)")
    p.add_argument(
        "--render",
        action="store_true",
        help="only regenerate docs/performance.md from bench/latest.json (no benchmark runs)",
    )
    p.add_argument("--events", type=int, default=1_000_000, help="B1 ledger rows")
    p.add_argument("--issues", type=int, default=10_000, help="B1 issues")
    p.add_argument("--sessions", type=int, default=100_000, help="B1 sessions")
    p.add_argument(
        "--grow-events",
        type=int,
        default=0,
        help="B1 growth: after B4, append this many ledger rows and measure B1 again "
        "(bench/b1_growth.py; 4000000 for the 5M figure)",
    )
    p.add_argument("--runs", type=int, default=0, help="runs per figure (default 7, quick 3)")
    p.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    p.add_argument(
        "--budget",
        type=float,
        default=13.0,
        help="minutes the whole run may take: B3 and B4 do fewer runs / requests when late "
        "(and say so in the results)",
    )
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    p.add_argument(
        "--reuse-db",
        action="store_true",
        help="development: reuse the database (and data) of a --keep-db run; implies --keep-db",
    )
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="rewrite docs/performance.md and bench/latest.json even for a partial run",
    )
    args = p.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(args.only) - set(ALL)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if args.quick:
        args.events, args.issues, args.sessions = 20_000, 500, 2_000
    args.runs = args.runs or (3 if args.quick else 7)
    args.keep_db = args.keep_db or args.reuse_db
    return args


def environment() -> tuple[dict[str, str], str, str]:
    """Production-like settings on loopback; returned for the children and applied here."""
    from cryptography.fernet import Fernet

    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": db_url,
            "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "RENSEI_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "SECURE_HSTS_SECONDS": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "LOG_LEVEL": "WARNING",
            "CONN_MAX_AGE": "600",
            "RENSEI_VAR_DIR": os.environ.get("RENSEI_VAR_DIR", str(ROOT / "var" / "bench")),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "rensei.settings",
        }
    )
    os.environ.update(env)
    return env, db_url, queue


def conninfo(url: str, dbname: str | None = None) -> str:
    u = urlparse(url)
    parts = {
        "host": u.hostname or "127.0.0.1",
        "port": str(u.port or 5432),
        "user": u.username or "postgres",
        "dbname": dbname or u.path.lstrip("/"),
    }
    if u.password:
        parts["password"] = u.password
    return " ".join(f"{k}={v}" for k, v in parts.items())


def recreate_database(url: str, drop_only: bool = False, reuse: bool = False) -> str:
    """Drop and create the benchmark database (never one whose name lacks 'bench')."""
    import psycopg

    name = urlparse(url).path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    with psycopg.connect(conninfo(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not (reuse and exists):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not drop_only:
                conn.execute(f'CREATE DATABASE "{name}"')
        version = conn.execute("SHOW server_version").fetchone()
    return str(version[0]) if version else "?"


def source_state() -> dict[str, Any]:
    """Which code was measured: the commit, and how many tracked files differed from it."""
    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    try:
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
        return {"commit": git("rev-parse", "--short=12", "HEAD"), "changed_files": len(changed)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": os.environ.get("BENCH_COMMIT", "unknown"), "changed_files": None}


def forget_queue(redis_url: str, queue: str) -> None:
    """Remove this run's queue and its bindings from the Redis database."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"*{queue}*"):
        client.delete(key)
    client.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        from bench import report

        latest = json.loads((ROOT / "bench" / "latest.json").read_text())
        (ROOT / "docs" / "performance.md").write_text(report.render(latest))
        log("rewrote docs/performance.md from bench/latest.json")
        return 0
    started = time.monotonic()
    env, db_url, queue = environment()
    log(f"database {urlparse(db_url).path.lstrip('/')}, broker {env['CELERY_BROKER_URL']}")
    pg_version = recreate_database(db_url, reuse=args.reuse_db)

    import django
    from django.core.management import call_command

    django.setup()
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(pg_version),
        "source": source_state(),
        "config": {
            "quick": args.quick,
            "runs": args.runs,
            "only": args.only,
            "budget_minutes": args.budget,
            "gunicorn": {"workers": args.workers, "threads": args.threads, "class": "gthread"},
        },
    }
    t = time.monotonic()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)
    results["setup_seconds"] = round(time.monotonic() - t, 1)

    ctx = Context(
        args=args,
        env=env,
        dsn=conninfo(db_url),
        queue=queue,
        deadline=started + args.budget * 60 - 20,  # 20 s to stop, drop and write
    )
    web: Proc | None = None
    failures: list[str] = []
    try:
        web, ctx.web_url = start_gunicorn(env, args.workers, args.threads)
        log(f"gunicorn on {ctx.web_url} ({args.workers} workers × {args.threads} threads)")
        from bench import b1_analytics, b1_growth, b2_query_budgets, b3_provisioning, b4_pages_load

        # B4 last: it spreads its requests over the time that is left.
        steps = [
            ("b1", b1_analytics.run),
            ("b2", b2_query_budgets.run),
            ("b3", b3_provisioning.run),
            ("b4", b4_pages_load.run),
            ("b1_growth", b1_growth.run),  # after B4: it leaves a larger ledger
        ]
        if {"b1", "b4"} & set(args.only):
            results["seed"] = b1_analytics.seed(ctx)
        growth = args.grow_events > 0 and "b1" in args.only
        reserve = b1_growth.seconds_needed(args.grow_events) if growth else 0.0
        ctx.deadline -= reserve  # B4 spreads itself over the time left: not the growth's
        for name, run in steps:
            if name == "b1_growth" and growth:
                ctx.deadline += reserve
            elif name not in args.only:
                continue
            log(f"{name} …")
            t = time.monotonic()
            try:
                results[name] = run(ctx)
            except Exception as exc:  # one broken benchmark must not hide the others
                failures.append(name)
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
            results[name]["seconds"] = round(time.monotonic() - t, 1)
            log(f"{name} done in {results[name]['seconds']} s")
    finally:
        if web is not None:
            web.stop()
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            recreate_database(db_url, drop_only=True)
        forget_queue(env["CELERY_BROKER_URL"], queue)

    results["total_seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["cpu_probe_ms_at_end"] = cpu_probe_ms()
    write_results(results, args)
    log(f"finished in {results['total_seconds']} s" + (f"; FAILED: {failures}" if failures else ""))
    return 1 if failures else 0


def write_results(results: dict[str, Any], args: argparse.Namespace) -> None:
    from bench import report

    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = results["generated_at"].replace(":", "").replace("+0000", "Z")
    text = json.dumps(results, indent=2, default=str) + "\n"
    (out / f"{stamp}.json").write_text(text)
    log(f"results: bench/results/{stamp}.json")
    full = set(args.only) == set(ALL) and not args.quick
    if full or args.write_docs:
        (ROOT / "bench" / "latest.json").write_text(text)
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "performance.md").write_text(report.render(results))
        log("wrote bench/latest.json and docs/performance.md")


if __name__ == "__main__":
    sys.exit(main())
