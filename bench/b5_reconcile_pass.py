"""B5: one reconciler pass over an org with 5,000 sandboxes, against the bare SDK list of them.

    python -m bench.b5_reconcile_pass             # SQLite file in a temp dir, 5,000 sandboxes
    python -m bench.b5_reconcile_pass --db postgres://postgres@127.0.0.1:5432/rensei_bench_b5
    python -m bench.b5_reconcile_pass --sandboxes 500 --runs 3

The E2B emulator runs in a process of its own (``bench/emulator.py --records``: sandboxes
without a process each). One org with an E2B pool and a credential; ``--sandboxes``
running sessions, each with its open running interval and its sandbox in the emulator,
tagged as the provision job tags it (org, session, request). Both sides list through the
real ``e2b`` SDK over HTTP, 100 sandboxes a page, as E2B serves them.

Each run, in the same state:

* the bare SDK list: ``Sandbox.list`` with the org's metadata filter, every page;
* a steady pass (``sessions.reconcile.reconcile_org``, in this process): every sandbox
  matches its running session, nothing to do;
* a pass with drift: just before it, ``--drift`` sandboxes of running sessions are killed
  behind the platform's back (the pass looks each one up, then marks its session lost and
  bills its interval) and ``--drift`` orphans are started (tagged with the org and no
  session: the pass kills them), so it too lists ``--sandboxes`` sandboxes. The next run
  first starts ``--drift`` new running sessions with their sandboxes, as many as were lost.

Figures: median (min – max) of ``--runs`` runs of each, the ratios of the pass medians to
the bare list's, the queries of each kind of pass and per page of E2B's list. A
PostgreSQL ``--db`` must name a database this run may create and drop. Each run writes
``bench/b5_latest.json``; ``report_lines`` renders it as the B5 section of
docs/performance.md (``make bench`` keeps it when it rewrites the page).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench.common import figure, start_emulator
from bench.standalone import standalone_database

LATEST = Path(__file__).resolve().parent / "b5_latest.json"
E2B_KEY = "e2b_bench_b5_key"
PAGE = 100  # the provider's page size (pools.providers.e2b.LIST_PAGE_SIZE); E2B's maximum
SLUG = "bench-b5"
T = TypeVar("T")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.b5_reconcile_pass")
    p.add_argument("--sandboxes", type=int, default=5000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--drift", type=int, default=5, help="lost sessions and orphans per run")
    p.add_argument("--db", default="", help="database URL (default: a temp SQLite file)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with standalone_database("b5", args.db) as connection:
        from django.test.utils import override_settings

        emulator, url = start_emulator(dict(os.environ), 0, "emulator-b5", records=True)
        try:
            with override_settings(E2B_API_URL=url, E2B_SANDBOX_URL=url):
                result = _measure(args, connection, url)
        finally:
            emulator.stop()
    result["measured_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    LATEST.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


class Fleet:
    """The org's sandboxes in the emulator, made and killed over its REST API."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.http = httpx.Client(
            base_url=url, headers={"X-API-Key": E2B_KEY}, trust_env=False, timeout=30
        )

    def start(self, metadata: dict[str, str]) -> str:
        body = {"templateID": "donmai-worker", "timeout": 86_400, "metadata": metadata}
        answer = self.http.post("/v2/sandboxes", json={**body, "envVars": {}})
        answer.raise_for_status()
        sandbox_id: str = answer.json()["sandboxID"]
        return sandbox_id

    def kill(self, sandbox_id: str) -> None:
        self.http.delete(f"/sandboxes/{sandbox_id}").raise_for_status()

    def sdk_list(self) -> int:
        """The bare SDK: every page of the org's running and paused sandboxes."""
        from e2b import Sandbox, SandboxQuery, SandboxState

        query = SandboxQuery(
            metadata={"rensei_org": SLUG}, state=[SandboxState.RUNNING, SandboxState.PAUSED]
        )
        paginator = Sandbox.list(query=query, limit=PAGE, api_key=E2B_KEY, api_url=self.url)
        seen = 0
        while paginator.has_next:
            seen += len(paginator.next_items())
        return seen


def _seed(fleet: Fleet) -> Any:
    """The org, its E2B pool and credential, and 500 issues (no sessions yet)."""
    from pools.config import validate_e2b_config
    from pools.models import CapacityPool
    from rensei.crypto import encrypt
    from rensei.models import Credential, Organization
    from sessions.models import Issue

    org = Organization.objects.create(name="Bench B5", slug=SLUG)
    config = validate_e2b_config({"templateId": "donmai-worker"})
    pool = CapacityPool.objects.create(org=org, name="b5", provider="e2b", config=config)
    Credential.objects.create(
        org=org, provider="e2b", secret_encrypted=encrypt(E2B_KEY), last_four=E2B_KEY[-4:]
    )
    issues = Issue.objects.bulk_create(Issue(org=org, key=f"B5-{i}") for i in range(500))
    return org, pool, issues


def _add_running(fleet: Fleet, org: Any, pool: Any, issues: list[Any], count: int) -> None:
    """``count`` running sessions, each with its sandbox and its open running interval."""
    from sessions.models import RunningInterval, Session, SessionState

    sessions = Session.objects.bulk_create(
        (
            Session(
                org=org,
                pool=pool,
                issue=issues[i % len(issues)],
                provider="e2b",
                state=SessionState.RUNNING,
                template="donmai-worker",
                vcpu=2,
                memory_mb=1024,
            )
            for i in range(count)
        ),
        batch_size=1000,
    )
    started = datetime.now(UTC)
    for s in sessions:
        s.sandbox_id = fleet.start(_tags(s))
        s.started_at = started
    Session.objects.bulk_update(sessions, ["sandbox_id", "started_at"], batch_size=500)
    RunningInterval.objects.bulk_create(
        (RunningInterval(session=s, started_at=started) for s in sessions), batch_size=1000
    )


def _timed_value(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _tags(session: Any) -> dict[str, str]:
    return {
        "rensei_org": SLUG,
        "rensei_session": str(session.pk),
        "rensei_request": str(session.request_id),
    }


def _measure(args: argparse.Namespace, connection: Any, url: str) -> dict[str, Any]:
    from django.test.utils import CaptureQueriesContext

    from sessions.models import Session, SessionState
    from sessions.reconcile import reconcile_org

    fleet = Fleet(url)
    org, pool, issues = _seed(fleet)
    _add_running(fleet, org, pool, issues, args.sandboxes)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # as autovacuum soon would after a bulk load
            for table in ("agent_sessions_session", "agent_sessions_runninginterval"):
                cursor.execute(f"ANALYZE {table}")
    pages = math.ceil(args.sandboxes / PAGE)

    def drift() -> None:
        """``--drift`` sandboxes of running sessions gone, ``--drift`` orphans started."""
        doomed = Session.objects.filter(org=org, state=SessionState.RUNNING).order_by("pk")
        for sandbox_id in doomed.values_list("sandbox_id", flat=True)[: args.drift]:
            fleet.kill(sandbox_id)
        for _ in range(args.drift):
            fleet.start({"rensei_org": SLUG})

    assert fleet.sdk_list() == args.sandboxes  # warm: the SDK's client, the first page
    reconcile_org(org.pk)  # warm: the provider's import and client, the credential's key
    bare_s, drift_s, steady_s = [], [], []
    drift_queries: list[int] = []
    steady_queries: list[int] = []
    got: dict[str, int] = {}
    for run in range(args.runs):
        if run:  # as many running sessions and sandboxes as before the last run's drift
            _add_running(fleet, org, pool, issues, args.drift)
        seconds, listed = _timed_value(fleet.sdk_list)
        bare_s.append(seconds)
        assert listed == args.sandboxes, listed
        with CaptureQueriesContext(connection) as ctx:
            seconds, got = _timed_value(lambda: reconcile_org(org.pk))
        steady_s.append(seconds)
        steady_queries.append(len(ctx.captured_queries))
        changed = {k: v for k, v in got.items() if v and k != "sandboxes_seen"}
        assert got["sandboxes_seen"] == args.sandboxes and not changed, got  # nothing to do
        drift()
        with CaptureQueriesContext(connection) as ctx:
            seconds, got = _timed_value(lambda: reconcile_org(org.pk))
        drift_s.append(seconds)
        drift_queries.append(len(ctx.captured_queries))
        want = (args.sandboxes, args.drift, args.drift)
        assert (got["sandboxes_seen"], got["lost"], got["orphans_killed"]) == want, got
    bare, drifted, steady = (statistics.median(x) for x in (bare_s, drift_s, steady_s))
    return {
        "database": connection.vendor,
        "sandboxes": args.sandboxes,
        "sessions": Session.objects.filter(org=org).count(),
        "drift_per_run": args.drift,
        "page_size": PAGE,
        "pages": pages,
        "runs": args.runs,
        "bare_list_ms": figure([s * 1000 for s in bare_s], "ms"),
        "drift_pass_ms": figure([s * 1000 for s in drift_s], "ms"),
        "steady_pass_ms": figure([s * 1000 for s in steady_s], "ms"),
        "drift_ratio": round(drifted / bare, 2),
        "steady_ratio": round(steady / bare, 2),
        # Each pass over the bare list of the same run (run alongside it, under the same load).
        "steady_ratio_per_run": figure(
            [p / b for p, b in zip(steady_s, bare_s, strict=True)], "×", 2
        ),
        "drift_ratio_per_run": figure(
            [p / b for p, b in zip(drift_s, bare_s, strict=True)], "×", 2
        ),
        "steady_queries_per_pass": max(steady_queries),
        "drift_queries_per_pass": max(drift_queries),
        "steady_queries_per_page": round(max(steady_queries) / pages, 2),
        "drift_queries_per_page": round(max(drift_queries) / pages, 2),
        "summary_of_a_drift_pass": got,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # other work on these cores
    }


def _range(f: dict[str, Any]) -> str:
    return f"{f['median']} ms ({f['min']} – {f['max']})"


def _ratios(f: dict[str, Any]) -> str:
    return f"{f['median']}× ({f['min']} – {f['max']})"


def report_lines() -> list[str]:
    """The B5 section of docs/performance.md, from the last run (none before a first run)."""
    if not LATEST.exists():
        return []
    r = json.loads(LATEST.read_text())
    drift = r["summary_of_a_drift_pass"]
    return [
        f"## B5: one reconciler pass over an org of {r['sandboxes']:,} sandboxes",
        "",
        f"One pass of the reconciler (`sessions/reconcile.py`, in process) over an org with "
        f"{r['sandboxes']:,} running sandboxes in the E2B emulator and as many running "
        f"sessions, against the bare SDK's `Sandbox.list` of the same sandboxes (every page, "
        f"{r['page_size']} a page: {r['pages']} pages). Both list through the real `e2b` "
        "SDK over HTTP from the emulator in a process of its own (`bench/emulator.py --records`: "
        "sandboxes as records, no process in them). The steady pass finds every sandbox in "
        f"step with its session; the pass with drift also finds {drift['lost']} sandboxes "
        f"gone (each looked up, its session marked lost and its interval billed) and "
        f"{drift['orphans_killed']} orphans (killed and audited). {r['database']}, median "
        f"(min – max) of {r['runs']} runs of each, measured {r['measured_at']} with load "
        f"averages (1, 5, 15 min) of {r['load_average']} at the end on this machine's "
        f"{r.get('cores', '?')} cores; run alone with "
        "`.venv/bin/python -m bench.b5_reconcile_pass` "
        "(`--db` for PostgreSQL).",
        "",
        "| | time | ÷ bare SDK list (of medians) | ÷ bare list, run by run | "
        "queries per pass | per page of the list |",
        "|---|---|---|---|---|---|",
        f"| bare SDK list | {_range(r['bare_list_ms'])} | 1× | – | – | – |",
        f"| steady pass | {_range(r['steady_pass_ms'])} | {r['steady_ratio']}× | "
        f"{_ratios(r['steady_ratio_per_run'])} | {r['steady_queries_per_pass']} | "
        f"{r['steady_queries_per_page']} |",
        f"| pass with drift | {_range(r['drift_pass_ms'])} | {r['drift_ratio']}× | "
        f"{_ratios(r['drift_ratio_per_run'])} | {r['drift_queries_per_pass']} | "
        f"{r['drift_queries_per_page']} |",
        "",
        "The steady pass's queries are the same at any size (asserted in "
        "`tests/sessions_engine/test_reconcile_queries.py`: N and 3N sandboxes, in step or "
        "with the same decisions, make as many queries): the lease, the org, its provider "
        "kinds and credential, one read of the live sessions (four columns each), whole rows "
        "only for the sessions a decision touches, then the stuck-session, queue and "
        "command checks. The pass with drift makes "
        f"{r['drift_queries_per_pass'] - r['steady_queries_per_pass']} more for its "
        f"{drift['lost'] + drift['orphans_killed']} decisions: an orphan costs one E2B kill "
        "and one audit row; a lost session one E2B look-up and the rest (its conditional "
        "transition, the running interval closed and priced into the ledger, their events, "
        "the audit row, the queue check of the freed slot). What the steady pass adds to "
        "the list is this process's own work per sandbox: the SDK's page turned into the "
        "provider's records, the read of the live sessions and the comparison. The emulator "
        "answers on loopback; against E2B each page also waits for the internet and E2B's "
        "own answer, which both sides pay alike, so the ratio there is closer to 1.",
        "",
    ]


if __name__ == "__main__":
    main()
