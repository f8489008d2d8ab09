"""B7: draining 10,000 outbox events to a local receiver, against a bare loop of POSTs.

    python -m bench.b7_outbox                    # SQLite file in a temp dir, 10,000 events
    python -m bench.b7_outbox --db postgres://postgres@127.0.0.1:5432/rensei_bench_b7
    python -m bench.b7_outbox --events 2000 --runs 1

One org, one webhook endpoint on a receiver in a process of its own (a threading HTTP
server on loopback that answers 200), ``--events`` events spread over 100 sessions (so the
per-session order applies) written through ``events.outbox.emit``. The drain is what the
beat job runs (``events.tasks.drain_once``: publish, fan out, then claim, sign, POST and
record each delivery, one process); it is timed until every delivery is delivered, against
a bare loop of the same number of POSTs of the same bodies with one keep-alive client to
the same receiver (the least any sender must do). Figures: events per second of each
(median of ``--runs``), their ratio, and the statements one ``emit`` adds to its caller's
transaction.

A PostgreSQL ``--db`` must name a database this run may create and drop. Each run writes
``bench/b7_latest.json``; ``report_lines`` renders it as the B7 section of
docs/performance.md (``make bench`` keeps it when it rewrites the page).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.b6_policies import _timed
from bench.standalone import standalone_database

LATEST = Path(__file__).resolve().parent / "b7_latest.json"
SESSIONS = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.b7_outbox")
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--db", default="", help="database URL (default: a temp SQLite file)")
    p.add_argument("--serve", type=int, default=-1, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def serve(port: int) -> None:
    """The receiver process: 200 to every POST, printing its port once it listens."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.serve >= 0:
        serve(args.serve)
        return {}
    os.environ.setdefault("RENSEI_WEBHOOKS_ALLOW_LOOPBACK", "true")
    with standalone_database("b7", args.db) as connection:
        receiver = subprocess.Popen(
            [sys.executable, "-m", "bench.b7_outbox", "--serve", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None
            port = int(receiver.stdout.readline())
            return _measure(args, connection, f"http://127.0.0.1:{port}/hooks")
        finally:
            receiver.kill()
            receiver.wait()


def _measure(args: argparse.Namespace, connection: Any, url: str) -> dict[str, Any]:
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    from events import delivery, endpoints
    from events.models import Delivery, DeliveryAttempt, DeliveryState, Event
    from events.outbox import emit
    from events.tasks import drain_once
    from events.types import SESSION_RUNNING
    from rensei.models import Channel, Organization

    org = Organization.objects.create(name="Bench B7", slug="bench-b7")
    endpoint, _ = endpoints.create_endpoint(org, url=url, channel=Channel.CLI)
    data = {"session": {"id": 1, "state": "running", "pool": "b7", "env_names": []}}

    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        emit(org.pk, SESSION_RUNNING, data, session_id=1)
    emit_statements = len(ctx.captured_queries)
    Event.objects.all().delete()

    drain_s: list[float] = []
    bare_s: list[float] = []
    for _ in range(args.runs):
        Event.objects.all().delete()
        with transaction.atomic():
            for n in range(args.events):
                emit(org.pk, SESSION_RUNNING, data, session_id=1 + n % SESSIONS)

        def drain() -> None:
            while Delivery.objects.exclude(state=DeliveryState.DELIVERED).exists() or (
                not Delivery.objects.exists()
            ):
                drain_once(budget_seconds=60)

        drain_s.append(_timed(drain))
        assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == args.events
        assert not DeliveryAttempt.objects.exclude(status_code=200).exists()
        bodies = [delivery.body_of(e) for e in Event.objects.select_related("org")]
        bare_s.append(_timed(lambda bodies=bodies: _bare_loop(url, bodies)))
    median_drain, median_bare = statistics.median(drain_s), statistics.median(bare_s)
    return {
        "database": connection.vendor,
        "events": args.events,
        "sessions": SESSIONS,
        "runs": args.runs,
        "drain_events_per_s": round(args.events / median_drain),
        "bare_posts_per_s": round(args.events / median_bare),
        "ratio": round(median_drain / median_bare, 1),
        "emit_statements": emit_statements,
        "drain_runs_s": [round(s, 2) for s in drain_s],
        "load_average": round(os.getloadavg()[0], 2),  # other work on the same cores
        "endpoint": endpoint.pk,
    }


def _bare_loop(url: str, bodies: list[bytes]) -> None:
    from events import delivery

    client = delivery.client()
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        assert client.post(url, content=body, headers=headers).status_code == 200


def report_lines() -> list[str]:
    """The B7 section of docs/performance.md, from the last run (none before a first run)."""
    if not LATEST.exists():
        return []
    r = json.loads(LATEST.read_text())
    return [
        "## B7: draining the outbox to a webhook receiver",
        "",
        f"{r['events']:,} events over {r['sessions']} sessions, written through "
        "`events.outbox.emit`, drained by the beat job's body (`events.tasks.drain_once`: "
        "publish, fan out, then claim, sign, POST and record each delivery, each session's "
        "events in order) to a receiver on loopback in a process of its own, against a bare "
        "loop of the same POSTs with one keep-alive client. "
        f"{r['database']}, median of {r['runs']} runs, measured {r['measured_at']} with a "
        f"1-minute load average of {r.get('load_average', '?')}; run alone with "
        "`.venv/bin/python -m bench.b7_outbox` (`--db` for PostgreSQL).",
        "",
        "| drain | bare POST loop | ratio | statements one emit adds |",
        "|---|---|---|---|",
        f"| {r['drain_events_per_s']:,} events/s | {r['bare_posts_per_s']:,} POSTs/s | "
        f"{r['ratio']}× | {r['emit_statements']} (one INSERT) |",
        "",
        "The drain's runs took "
        + ", ".join(f"{t:g} s" for t in r.get("drain_runs_s", []))
        + f" ({r['events'] / max(r.get('drain_runs_s', [1])):.0f} to "
        f"{r['events'] / min(r.get('drain_runs_s', [1])):.0f} events/s): the machine's load "
        "changed a lot while they ran (other work shares these cores; the load average is "
        "read at the end), so the fastest run is "
        "nearer what one drain process does on a quiet machine.",
        "",
        "One drain process sends up to `RENSEI_WEBHOOK_DELIVERY_THREADS` (4) deliveries of "
        "different sessions side by side; per delivery it adds a claim (a conditional "
        "UPDATE), the signature, and one transaction recording the attempt and the outcome, "
        "beside the POST itself, and a session's next event waits for the previous one's "
        "answer. Several workers drain side by side (claims keep them apart), so throughput "
        "grows with workers up to the database's write rate.",
        "",
    ]


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result:
        from datetime import UTC, datetime

        result["measured_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        LATEST.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
