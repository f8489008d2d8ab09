"""B3: provisioning throughput through the whole control plane, against bare SDK calls.

For each added ``create`` latency of the E2B emulator (0 ms, and 150 ms: E2B's published
sandbox start time), with the emulator in a process of its own:

- **through Rensei, throughput**: eight dispatcher threads, each in a closed loop:
  ``POST /api/v1/sessions`` (gunicorn, an org API token) → wait until the session is
  ``running`` → next, until the run has made its sessions. The API answers after the commit
  that enqueues the provision job on Redis; one Celery worker with four prefork processes
  takes it, calls ``Sandbox.create``, records the sandbox and opens the running interval.
  Request → running is the time from just before the POST to the ``started_at`` the worker
  wrote with the ``running`` transition (same clock). One poller thread reads the state of
  every session the dispatchers wait for, every 5 ms in one query, only to know when each
  may send its next request.
- **through Rensei, overhead**: the same with four dispatchers, as many as the worker has
  slots. With eight closed loops on four slots a session waits for a slot while four others
  provision: by Little's law its request → running is 8 ÷ throughput, about two creates at
  the bare loop's pace, however little the control plane adds; that run's latencies are
  reported as "with the queue". With four no session waits for a slot, so request → running
  minus the bare create is what the control plane adds to one provision.
- **bare SDK**: four threads (the worker's parallelism), each calling ``e2b.Sandbox.create``
  in a loop, same total, same emulator, in the same run.

Figures per run: sessions per second (sessions ÷ first request → last ``running``) of the
eight-dispatcher run, p50/p95 of request → running of both runs, the same for the bare
creates; the ratio of the throughputs (target ≥ 0.95 at +150 ms, ≥ 0.25 at +0 ms) and the
control-plane overhead per provision, p50 and p95 of the four-dispatcher request → running
minus the bare create's (targets ≤ 10 ms and ≤ 25 ms). Every session is terminated through
the API after its run and every bare sandbox killed; the emulator must hold no sandbox at
the end.

Measurement artefacts removed (both sides of every ratio run against the same emulator):

- The emulator is ``bench/emulator.py --records``: sandboxes as records, with no namespace init
  process each and no metrics sampling every 5 s. Starting the init is a Python start-up,
  tens of milliseconds of CPU on the emulator's event loop per ``create``, so every create
  waited for the ones before it and took CPU from the processes measured (12–18 bare creates
  per second at +0 ms). E2B starts its VMs on its own machines; no command runs in these
  sandboxes (the pool does not launch the runner inline).
- One poller for all dispatchers instead of one query per dispatcher every 5 ms: eight
  pollers sent 1,600 queries a second to the PostgreSQL the control plane uses, on the same
  two cores.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.b3_load import (
    BARE_THREADS,
    DISPATCHERS,
    E2B_KEY,
    TEMPLATE,
    WORKER_SLOTS,
    ApiRun,
    bare_run,
    terminate_all,
)
from bench.common import (
    Context,
    figure,
    log,
    ms,
    start_emulator,
    start_worker,
    wait_worker_ready,
)

LATENCIES_MS = (0, 150)
LATENCY_DISPATCHERS = WORKER_SLOTS  # the overhead run: never more sessions than slots
TARGETS = {
    "overhead_p50_ms_max": 10,
    "overhead_p95_ms_max": 25,
    "throughput_ratio_min": {"0": 0.25, "150": 0.95},
}
B4_RESERVE_S = 300.0  # B4 runs after B3 (today and the baseline): leave it this much


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
    load_before = os.getloadavg()[0]  # the machine is shared: how busy it was, for the reader
    env = dict(ctx.env)
    emulator, url = start_emulator(env, latency_ms, f"emulator-{latency_ms}ms", records=True)
    env.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=E2B_KEY)
    worker = start_worker(env, ctx.queue, WORKER_SLOTS, f"worker-b3-{latency_ms}ms")
    api_runs: list[dict[str, Any]] = []
    lat_runs: list[dict[str, Any]] = []
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
            lat = ApiRun(ctx, token, total, f"latency {i + 1}", LATENCY_DISPATCHERS).go()
            terminate_all(ctx, token, lat.pop("ids", []))
            bare = bare_run(url, total)
            api_runs.append(api)
            lat_runs.append(lat)
            bare_runs.append(bare)
            log(
                f"  +{latency_ms} ms run {i + 1}: Rensei {api.get('per_second', 0):.1f}/s "
                f"(p50 {api.get('p50_ms', 0):.0f} ms with the queue), alone p50 "
                f"{lat.get('p50_ms', 0):.0f} ms p95 {lat.get('p95_ms', 0):.0f} ms; "
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
    errors = [e for r in api_runs + lat_runs + bare_runs for e in r["errors"]]
    return {
        "added_create_latency_ms": latency_ms,
        "sessions_per_run": total,
        "runs": len(api_runs),
        "runs_planned": runs,
        "rensei_per_second": figure([r["per_second"] for r in api_runs], "sessions/s", 2),
        "rensei_p50_ms": figure([r["p50_ms"] for r in lat_runs], "ms"),
        "rensei_p95_ms": figure([r["p95_ms"] for r in lat_runs], "ms"),
        "api_answer_p50_ms": figure([r["api_answer_p50_ms"] for r in lat_runs], "ms"),
        "queued_p50_ms": figure([r["p50_ms"] for r in api_runs], "ms"),
        "queued_p95_ms": figure([r["p95_ms"] for r in api_runs], "ms"),
        "queued_api_answer_p50_ms": figure([r["api_answer_p50_ms"] for r in api_runs], "ms"),
        "bare_per_second": figure([r["per_second"] for r in bare_runs], "creates/s", 2),
        "bare_p50_ms": figure([r["p50_ms"] for r in bare_runs], "ms"),
        "bare_p95_ms": figure([r["p95_ms"] for r in bare_runs], "ms"),
        "throughput_ratio": figure(
            [a["per_second"] / b["per_second"] for a, b in zip(api_runs, bare_runs, strict=True)],
            "×",
            2,
        ),
        "overhead_ms": figure(
            [a["p50_ms"] - b["p50_ms"] for a, b in zip(lat_runs, bare_runs, strict=True)], "ms"
        ),
        "overhead_p95_ms": figure(
            [a["p95_ms"] - b["p95_ms"] for a, b in zip(lat_runs, bare_runs, strict=True)], "ms"
        ),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
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
        "latency_dispatchers": LATENCY_DISPATCHERS,
        "bare_threads": BARE_THREADS,
        "worker": f"1 Celery worker, prefork, concurrency {WORKER_SLOTS}, Redis broker",
        "emulator": "own process, TCP_NODELAY on its connections, sandboxes as records "
        "(bench/emulator.py --records)",
        "targets": TARGETS,
        "by_latency": out,
    }
