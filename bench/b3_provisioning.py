"""B3: provisioning throughput through the whole control plane, against bare SDK calls.

For each added ``create`` latency of the E2B emulator (0 ms, and 150 ms: E2B's published
sandbox start time), with the emulator in a process of its own:

- **through Rensei**: eight dispatcher threads, each in a closed loop: ``POST /api/v1/sessions``
  (gunicorn, an org API token) → wait until the session is ``running`` → next, until the run
  has made its sessions. The API answers after the commit that enqueues the provision job on
  Redis; one Celery worker with four prefork processes takes it, calls ``Sandbox.create`` (and
  ``get_info`` for the sandbox size), records the sandbox and opens the running interval.
  Request → running is the time from just before the POST to the ``started_at`` the worker
  wrote with the ``running`` transition (same clock); the threads poll the database every
  5 ms only to know when to send the next request.
- **bare SDK**: four threads (the worker's parallelism), each calling ``e2b.Sandbox.create``
  in a loop, same total, same emulator, in the same run.

Figures per run: sessions per second (sessions ÷ first request → last ``running``), p50/p95
of request → running, the same for the bare creates; the ratio of the throughputs (target
≥ 0.95 at +150 ms, ≥ 0.25 at +0 ms) and the control-plane overhead per provision, p50 and
p95 of request → running minus the bare create's (targets ≤ 10 ms and ≤ 25 ms). Every
session is terminated through the API after its run and every bare sandbox killed; the
emulator must hold no sandbox at the end.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.common import (
    Context,
    figure,
    log,
    ms,
    percentile,
    start_emulator,
    start_worker,
    wait_until,
    wait_worker_ready,
)

LATENCIES_MS = (0, 150)
DISPATCHERS = 8  # closed-loop dispatcher threads posting to the API
WORKER_SLOTS = 4  # Celery prefork processes running provision jobs
BARE_THREADS = WORKER_SLOTS  # the bare loop gets the parallelism the worker has
TARGETS = {
    "overhead_p50_ms_max": 10,
    "overhead_p95_ms_max": 25,
    "throughput_ratio_min": {"0": 0.25, "150": 0.95},
}
TEMPLATE = "donmai-worker"
E2B_KEY = "e2b_bench_key_0000000000"
POLL_S = 0.005
B4_RESERVE_S = 150.0  # B4 runs after B3: leave it this much of the time budget


def setup_org() -> str:
    """The org, its E2B pool and an API token (returned)."""
    from pools.models import CapacityPool
    from pools.providers.e2b import E2BProvider
    from rensei.models import Channel, Organization
    from rensei.tokens import create_token

    org, _ = Organization.objects.get_or_create(slug="bench-b3", defaults={"name": "Bench B3"})
    CapacityPool.objects.get_or_create(
        org=org,
        name="bench-e2b",
        defaults={
            "provider": "e2b",
            "config": E2BProvider.validate_config({"templateId": TEMPLATE}),
        },
    )
    _, token = create_token(org, "bench dispatcher", None, Channel.CLI)
    return token


class ApiRun:
    """Closed-loop dispatchers: POST, wait for running, repeat."""

    def __init__(self, ctx: Context, token: str, total: int, tag: str) -> None:
        self.ctx, self.token, self.total, self.tag = ctx, token, total, tag
        self.lock = threading.Lock()
        self.sent = 0
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def _next(self) -> int | None:
        with self.lock:
            if self.sent >= self.total:
                return None
            self.sent += 1
            return self.sent

    def worker(self) -> None:
        import httpx
        import psycopg

        headers = {"Authorization": f"Bearer {self.token}"}
        with (
            httpx.Client(
                base_url=self.ctx.web_url, headers=headers, trust_env=False, timeout=60
            ) as web,
            psycopg.connect(self.ctx.dsn, autocommit=True) as db,
        ):
            while (n := self._next()) is not None:
                body = {
                    "issue": {"key": f"BENCH-{n % 50}"},
                    "runtime_kinds": ["npm"],
                    "requirement_kinds": ["git"],
                }
                sent = time.time()
                resp = post_once(web, body)
                if resp.status_code != 202:
                    self.errors.append(f"POST answered {resp.status_code}: {resp.text[:200]}")
                    continue
                answered = time.time()
                sid = resp.json()["id"]
                deadline = time.monotonic() + 60
                state, started = "", None
                while time.monotonic() < deadline:
                    row = db.execute(
                        "SELECT state, started_at FROM agent_sessions_session WHERE id = %s",
                        (sid,),
                    ).fetchone()
                    state, started = row if row else ("", None)
                    if state in ("running", "failed"):
                        break
                    time.sleep(POLL_S)
                seen = time.time()
                if state != "running" or started is None:
                    self.errors.append(f"session {sid} ended {state or 'missing'}")
                    continue
                self.samples.append(
                    {
                        "id": sid,
                        "sent": sent,
                        "answered": answered,
                        "running": started.timestamp(),
                        "seen": seen,
                    }
                )

    def go(self) -> dict[str, Any]:
        threads = [threading.Thread(target=self.worker) for _ in range(DISPATCHERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s = self.samples
        if not s:
            return {"sessions": 0, "errors": self.errors}
        wall = max(x["running"] for x in s) - min(x["sent"] for x in s)
        latency = [x["running"] - x["sent"] for x in s]
        return {
            "sessions": len(s),
            "errors": self.errors,
            "per_second": len(s) / wall,
            "p50_ms": ms(percentile(latency, 50)),
            "p95_ms": ms(percentile(latency, 95)),
            "api_answer_p50_ms": ms(percentile([x["answered"] - x["sent"] for x in s], 50)),
            "ids": [x["id"] for x in s],
        }


def post_once(web: Any, body: dict[str, Any]) -> Any:
    """POST a session, sent again once on a fresh connection if the kept-alive one was
    closed under it (gunicorn drops connections idle past its keep-alive, 2 s, while a
    thread waits for running on a loaded machine; it never read that request). No
    Idempotency-Key: it would add its look-ups to every measured request. A request that
    did reach the server would leave a session nobody terminates, which the sandboxes-left
    check at the end reports."""
    import httpx

    try:
        return web.post("/api/v1/sessions", json=body)
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
        return web.post("/api/v1/sessions", json=body)


def bare_run(url: str, total: int) -> dict[str, Any]:
    """``Sandbox.create`` in a loop on BARE_THREADS threads; the sandboxes are killed after."""
    from e2b import Sandbox
    from e2b.connection_config import ApiParams

    opts: ApiParams = {"api_key": E2B_KEY, "api_url": url, "sandbox_url": url}
    lock = threading.Lock()
    left = [total]
    latencies: list[float] = []
    made: list[str] = []
    errors: list[str] = []

    def loop() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            t = time.perf_counter()
            try:
                sandbox = Sandbox.create(
                    template=TEMPLATE, timeout=600, metadata={"bench": "bare"}, **opts
                )
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - t)
            made.append(sandbox.sandbox_id)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(BARE_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    for sandbox_id in made:
        Sandbox.kill(sandbox_id, **opts)
    return {
        "creates": len(latencies),
        "errors": errors,
        "per_second": len(latencies) / wall,
        "p50_ms": ms(percentile(latencies, 50)),
        "p95_ms": ms(percentile(latencies, 95)),
    }


def terminate_all(ctx: Context, token: str, ids: list[int]) -> None:
    """Terminate through the API, wait until every session is terminated."""
    import httpx
    import psycopg

    headers = {"Authorization": f"Bearer {token}"}

    def post(part: list[int]) -> None:
        with httpx.Client(
            base_url=ctx.web_url, headers=headers, trust_env=False, timeout=60
        ) as web:
            for sid in part:
                web.post(f"/api/v1/sessions/{sid}/terminate")

    threads = [threading.Thread(target=post, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(ctx.dsn, autocommit=True) as db:

        def done() -> bool:
            row = db.execute(
                "SELECT count(*) FROM agent_sessions_session WHERE id = ANY(%s) "
                "AND state <> 'terminated'",
                (ids,),
            ).fetchone()
            return bool(row and row[0] == 0)

        wait_until(done, 120, "the sessions to terminate")


def sandboxes_left(url: str) -> int:
    from pools.providers.e2b import E2BProvider

    provider = E2BProvider(E2B_KEY, api_url=url, sandbox_url=url)
    return len(provider.list_sandboxes())


def diagnose(url: str, token: str, samples: int = 5) -> dict[str, Any]:
    """Where a provision's time goes, step by step, in this process (the worker stopped):
    the API request and the provision job, with their SQL queries, and a bare create."""
    import json

    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext
    from e2b import Sandbox

    from rensei.celery import app
    from sessions import jobs

    body = json.dumps(
        {"issue": {"key": "BENCH-DIAG"}, "runtime_kinds": [], "requirement_kinds": []}
    )
    client = Client()
    api_t, job_t, bare_t, api_q, job_q, api_db, job_db = [], [], [], [], [], [], []
    made: list[str] = []
    with override_settings(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=E2B_KEY):
        for _ in range(samples + 1):  # the first is a warm-up
            with CaptureQueriesContext(connection) as q:
                t = time.perf_counter()
                resp = client.post(
                    "/api/v1/sessions",
                    body,
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {token}",
                )
                api_t.append(time.perf_counter() - t)
            api_q.append(len(q.captured_queries))
            api_db.append(sum(float(x["time"]) for x in q.captured_queries))
            sid = resp.json()["id"]
            with CaptureQueriesContext(connection) as q:
                t = time.perf_counter()
                jobs.provision(sid)
                job_t.append(time.perf_counter() - t)
            job_q.append(len(q.captured_queries))
            job_db.append(sum(float(x["time"]) for x in q.captured_queries))
            t = time.perf_counter()
            made.append(
                Sandbox.create(
                    template=TEMPLATE, api_key=E2B_KEY, api_url=url, sandbox_url=url
                ).sandbox_id
            )
            bare_t.append(time.perf_counter() - t)
    app.control.purge()  # the provision jobs the API enqueued: they ran here instead
    for sandbox_id in made:
        Sandbox.kill(sandbox_id, api_key=E2B_KEY, api_url=url, sandbox_url=url)
    from sessions.models import Session

    for sandbox_id in Session.objects.filter(issue__key="BENCH-DIAG").values_list(
        "sandbox_id", flat=True
    ):
        Sandbox.kill(sandbox_id, api_key=E2B_KEY, api_url=url, sandbox_url=url)
    return {
        "api_request_ms": figure([ms(x) for x in api_t[1:]], "ms"),
        "api_queries": max(api_q[1:]),
        "api_db_ms": figure([ms(x) for x in api_db[1:]], "ms"),
        "job_ms": figure([ms(x) for x in job_t[1:]], "ms"),
        "job_queries": max(job_q[1:]),
        "job_db_ms": figure([ms(x) for x in job_db[1:]], "ms"),
        "bare_create_ms": figure([ms(x) for x in bare_t[1:]], "ms"),
    }


def one_latency(
    ctx: Context, token: str, latency_ms: int, runs: int, total: int, later: int
) -> dict[str, Any]:
    """``runs`` runs at one added latency; fewer when the time budget cannot hold them and
    the ``later`` latencies still to measure (at least one run each is kept)."""
    env = dict(ctx.env)
    emulator, url = start_emulator(env, latency_ms, f"emulator-{latency_ms}ms")
    env.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=E2B_KEY)
    worker = start_worker(env, ctx.queue, WORKER_SLOTS, f"worker-b3-{latency_ms}ms")
    api_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    last_run_s = 0.0
    try:
        wait_worker_ready(ctx.queue)
        warm = ApiRun(ctx, token, 2 * DISPATCHERS, "warm-up").go()
        terminate_all(ctx, token, warm.get("ids", []))
        bare_run(url, 2 * BARE_THREADS)
        for i in range(runs):
            run_started = time.monotonic()
            if i > 0 and ctx.time_left() - B4_RESERVE_S < last_run_s * (1 + later):
                log(f"  +{latency_ms} ms: stopping after {i} run(s) to stay within the budget")
                break
            api = ApiRun(ctx, token, total, f"run {i + 1}").go()
            terminate_all(ctx, token, api.pop("ids", []))
            bare = bare_run(url, total)
            api_runs.append(api)
            bare_runs.append(bare)
            log(
                f"  +{latency_ms} ms run {i + 1}: Rensei {api.get('per_second', 0):.1f}/s "
                f"p50 {api.get('p50_ms', 0):.0f} ms p95 {api.get('p95_ms', 0):.0f} ms; "
                f"bare {bare['per_second']:.1f}/s p50 {bare['p50_ms']:.0f} ms "
                f"p95 {bare['p95_ms']:.0f} ms"
            )
            last_run_s = time.monotonic() - run_started
        worker.stop()
        steps = diagnose(url, token) if latency_ms == 0 else None
        left = sandboxes_left(url)
    finally:
        worker.stop()
        emulator.stop()
    errors = [e for r in api_runs + bare_runs for e in r["errors"]]
    return {
        "added_create_latency_ms": latency_ms,
        "sessions_per_run": total,
        "runs": len(api_runs),
        "runs_planned": runs,
        "rensei_per_second": figure([r["per_second"] for r in api_runs], "sessions/s", 2),
        "rensei_p50_ms": figure([r["p50_ms"] for r in api_runs], "ms"),
        "rensei_p95_ms": figure([r["p95_ms"] for r in api_runs], "ms"),
        "api_answer_p50_ms": figure([r["api_answer_p50_ms"] for r in api_runs], "ms"),
        "bare_per_second": figure([r["per_second"] for r in bare_runs], "creates/s", 2),
        "bare_p50_ms": figure([r["p50_ms"] for r in bare_runs], "ms"),
        "bare_p95_ms": figure([r["p95_ms"] for r in bare_runs], "ms"),
        "throughput_ratio": figure(
            [a["per_second"] / b["per_second"] for a, b in zip(api_runs, bare_runs, strict=True)],
            "×",
            2,
        ),
        "overhead_ms": figure(
            [a["p50_ms"] - b["p50_ms"] for a, b in zip(api_runs, bare_runs, strict=True)], "ms"
        ),
        "overhead_p95_ms": figure(
            [a["p95_ms"] - b["p95_ms"] for a, b in zip(api_runs, bare_runs, strict=True)], "ms"
        ),
        "errors": errors[:20],
        "error_count": len(errors),
        "sandboxes_left": left,
        "steps": steps,
    }


def run(ctx: Context) -> dict[str, Any]:
    token = setup_org()
    runs = 1 if ctx.args.quick else min(ctx.args.runs, 3)
    total = 40 if ctx.args.quick else 200
    out = [
        one_latency(ctx, token, latency, runs, total, later=len(LATENCIES_MS) - 1 - k)
        for k, latency in enumerate(LATENCIES_MS)
    ]
    return {
        "concurrency": DISPATCHERS,
        "dispatchers": DISPATCHERS,
        "bare_threads": BARE_THREADS,
        "worker": f"1 Celery worker, prefork, concurrency {WORKER_SLOTS}, Redis broker",
        "emulator": "own process, TCP_NODELAY on its connections (see bench/emulator.py)",
        "targets": TARGETS,
        "by_latency": out,
    }
