"""B3's load: closed-loop dispatchers through the API, the bare SDK loop, the clean-up.

How they are used and what the figures mean: ``bench/b3_provisioning.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.common import Context, ms, percentile, wait_until

DISPATCHERS = 8  # closed-loop dispatcher threads posting to the API (the throughput run)
WORKER_SLOTS = 4  # Celery prefork processes running provision jobs
BARE_THREADS = WORKER_SLOTS  # the bare loop gets the parallelism the worker has
TEMPLATE = "donmai-worker"
E2B_KEY = "e2b_bench_key_0000000000"
POLL_S = 0.005


class ApiRun:
    """Closed-loop dispatchers: POST, wait for running, repeat. One poller thread reads the
    state of every session the dispatchers wait for, every POLL_S, in one query."""

    def __init__(
        self, ctx: Context, token: str, total: int, tag: str, dispatchers: int = DISPATCHERS
    ) -> None:
        self.ctx, self.token, self.total, self.tag = ctx, token, total, tag
        self.dispatchers = dispatchers
        self.lock = threading.Lock()
        self.sent = 0
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.waiting: dict[int, threading.Event] = {}
        self.seen: dict[int, tuple[str, Any, float]] = {}  # id → (state, started_at, seen)
        self.done = threading.Event()

    def _next(self) -> int | None:
        with self.lock:
            if self.sent >= self.total:
                return None
            self.sent += 1
            return self.sent

    def poller(self) -> None:
        import psycopg

        with psycopg.connect(self.ctx.dsn, autocommit=True) as db:
            while not self.done.is_set():
                with self.lock:
                    ids = list(self.waiting)
                if ids:
                    rows = db.execute(
                        "SELECT id, state, started_at FROM agent_sessions_session "
                        "WHERE id = ANY(%s) AND state IN ('running', 'failed')",
                        (ids,),
                    ).fetchall()
                    now = time.time()
                    with self.lock:
                        for sid, state, started in rows:
                            self.seen[sid] = (state, started, now)
                            event = self.waiting.pop(sid, None)
                            if event is not None:
                                event.set()
                time.sleep(POLL_S)

    def worker(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(
            base_url=self.ctx.web_url, headers=headers, trust_env=False, timeout=60
        ) as web:
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
                event = threading.Event()
                with self.lock:
                    self.waiting[sid] = event
                event.wait(60)
                with self.lock:
                    self.waiting.pop(sid, None)
                    state, started, seen = self.seen.pop(sid, ("", None, time.time()))
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
        poller = threading.Thread(target=self.poller)
        poller.start()
        threads = [threading.Thread(target=self.worker) for _ in range(self.dispatchers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.done.set()
        poller.join()
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
