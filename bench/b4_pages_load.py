"""B4: pages under load: the dashboard, the sessions list and Cost per Issue, 1 and 50 users.

On the B1 organisation (the seeded ledger, sessions and issues), logged in as its admin
(who also sees the cost cards on the dashboard), through gunicorn on loopback. A user is a
thread with its own keep-alive connection (httpx) sending one request after another: with
1 user, ``REQUESTS_ONE`` requests per page per run; with 50, ``REQUESTS_EACH`` each. Only
the HTML is fetched (no static files). Per run: p50 and p95 of the request times, and the
errors (any status but 200, or no answer within 120 s). The figures: the single-user p50
(target ≤ 25 ms) and the throughput at 50 users as a ratio to the same page served by the
baseline commit's code in the same run (``bench/b4_baseline.py``; target ≥ 3×); the ratio
50-user p95 ÷ 1-user p95 is reported. A run stops sending new requests after
``RUN_BUDGET_S`` so a slow page cannot hold the whole benchmark hostage (less when the
run's time budget is short: B4 runs last and shares what is left); the requests actually
made are reported.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench import wrk
from bench.common import Context, compact_sql, figure, log, ms, percentile

PAGES = {
    "dashboard": "/",
    "sessions list": "/sessions/",
    "cost per issue": "/analytics/cost-per-issue/",
}
USERS = (1, 50)
# What the machine, gunicorn and this load generator give any request at 50 users: the
# liveness check (no session, no database, no template) and the lightest page behind the
# login (session, user, org, the layout, one small table). A page cannot be served faster
# than these, so each page's 3× target is compared with them (``ceiling``).
FLOOR_PAGE = "lightest page behind the login"
CEILING = {"liveness check": "/healthz", FLOOR_PAGE: "/settings/api-tokens/"}
REQUESTS_ONE = 20
REQUESTS_EACH = 3
RUN_BUDGET_S = 90.0


def load(
    ctx: Context, url: str, users: int, each: int, budget: float, base_url: str = ""
) -> dict[str, Any]:
    import httpx

    cookie = ctx.shared["cookies"]["admin"]
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + budget
    start = threading.Barrier(users)

    def user() -> None:
        with httpx.Client(
            base_url=base_url or ctx.web_url,
            cookies={"sessionid": cookie},
            trust_env=False,
            timeout=120,
        ) as web:
            start.wait()
            for _ in range(each):
                if time.monotonic() > deadline:
                    return
                t = time.perf_counter()
                try:
                    resp = web.get(url)
                    problem = None if resp.status_code == 200 else f"status {resp.status_code}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}"
                elapsed = time.perf_counter() - t
                with lock:
                    if problem:
                        errors.append(problem)
                    else:
                        times.append(elapsed)

    threads = [threading.Thread(target=user) for _ in range(users)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "requests": len(times) + len(errors),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "p50_ms": ms(percentile(times, 50)) if times else None,
        "p95_ms": ms(percentile(times, 95)) if times else None,
        "per_second": (len(times) / wall) if wall else 0.0,
    }


def anatomy(user_id: int, url: str) -> dict[str, Any]:
    """One request in this process with its queries: where a single-user request goes."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(pk=user_id))
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        t = time.perf_counter()
        client.get(url)
        elapsed = time.perf_counter() - t
    timed = sorted(
        ((float(q["time"]) * 1000, str(q["sql"])) for q in captured.captured_queries),
        reverse=True,
    )
    return {
        "request_ms": round(ms(elapsed), 1),
        "queries": len(timed),
        "db_ms": round(sum(t for t, _ in timed), 1),
        "slowest": [{"ms": round(t, 1), "sql": compact_sql(sql)} for t, sql in timed[:3]],
    }


def measure(ctx: Context, url: str, base_url: str, runs: int, budget: Any) -> dict[str, Any]:
    """1 and 50 users on one page of one server, after a warm-up."""
    load(ctx, url, 1, 3, 30, base_url)  # warm-up: every gunicorn worker may need a first request
    load(ctx, url, 8, 2, 30, base_url)
    by_users: dict[str, Any] = {}
    for users in USERS:
        each = REQUESTS_ONE if users == 1 else REQUESTS_EACH
        results = [load(ctx, url, users, each, budget(), base_url) for _ in range(runs)]
        by_users[str(users)] = {
            "requests_per_run": [r["requests"] for r in results],
            "p50_ms": figure([r["p50_ms"] or 0 for r in results], "ms"),
            "p95_ms": figure([r["p95_ms"] or 0 for r in results], "ms"),
            "per_second": figure([r["per_second"] for r in results], "req/s", 1),
            "errors": sum(r["errors"] for r in results),
            "error_kinds": sorted({k for r in results for k in r["error_kinds"]}),
        }
    fast = wrk_runs(ctx, url, base_url, runs, budget, by_users["50"]["per_second"]["median"])
    if fast is not None:
        by_users["50"]["wrk"] = fast
    return by_users


def wrk_runs(
    ctx: Context, url: str, base_url: str, runs: int, budget: Any, rate: float
) -> dict[str, Any] | None:
    """50 users' throughput by wrk (``bench/wrk.py``), when it is installed. ``rate``: the
    Python client's throughput of the same page, which sizes each run (``wrk.seconds_for``:
    wrk counts only the requests that finish within the run, so a run too short for a slow
    page would leave out the work in flight at its end)."""
    if wrk.path() is None:
        return None
    cookie = ctx.shared["cookies"]["admin"]
    seconds = wrk.seconds_for(rate)
    results = [
        wrk.run(f"{base_url or ctx.web_url}{url}", cookie, min(seconds, max(wrk.SECONDS, budget())))
        for _ in range(min(runs, wrk.RUNS))
    ]
    return {
        "per_second": figure([r["per_second"] for r in results], "req/s", 1),
        "requests_per_run": [r["requests"] for r in results],
        "seconds_per_run": seconds,
        "errors": sum(r["errors"] for r in results),
    }


def against(now: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """Today's figures as ratios to the baseline's, measured in the same run."""
    fast, slow = now["50"]["per_second"]["median"], then["50"]["per_second"]["median"]
    out = {
        "throughput_50_ratio": round(fast / slow, 2) if slow else None,
        "p50_1_ms": then["1"]["p50_ms"]["median"],
        "per_second_50": slow,
        "errors": then["1"]["errors"] + then["50"]["errors"],
    }
    if "wrk" in now["50"] and "wrk" in then["50"]:
        fast, slow = (
            now["50"]["wrk"]["per_second"]["median"],
            then["50"]["wrk"]["per_second"]["median"],
        )
        out["wrk_throughput_50_ratio"] = round(fast / slow, 2) if slow else None
        out["wrk_per_second_50"] = slow
        out["errors"] += then["50"]["wrk"]["errors"]
    return out


def ceiling(ctx: Context, runs: int, budget: Any) -> list[dict[str, Any]]:
    """``CEILING``'s pages at 50 users, loaded as the pages are, right after them."""
    out = []
    for name, url in CEILING.items():
        load(ctx, url, 8, 2, 30)  # warm-up
        results = [load(ctx, url, 50, REQUESTS_EACH, budget()) for _ in range(runs)]
        per_second = figure([r["per_second"] for r in results], "req/s", 1)
        errors = sum(r["errors"] for r in results)
        log(f"  ceiling, {name}: {per_second['median']} req/s at 50 users, errors {errors}")
        limit = {"page": name, "url": url, "per_second_50": per_second, "errors": errors}
        fast = wrk_runs(ctx, url, "", runs, budget, per_second["median"])
        if fast is not None:
            limit["wrk"] = fast
            log(f"  ceiling, {name}, wrk: {fast['per_second']['median']} req/s")
        out.append(limit)
    return out


def run(ctx: Context) -> dict[str, Any]:
    from bench import b4_baseline

    runs = 1 if ctx.args.quick else min(ctx.args.runs, 3)
    out: list[dict[str, Any]] = []
    old: Any = None
    baseline: dict[str, Any] = {"commit": b4_baseline.BASELINE_COMMIT}
    try:
        old, baseline["url"] = b4_baseline.start(ctx.env, ctx.args.workers, ctx.args.threads)
    except Exception as exc:  # no git history (a shallow clone), or the old tree will not serve
        baseline["error"] = f"{type(exc).__name__}: {exc}"
        log(f"  baseline unavailable: {baseline['error']}")
    servers = 2 if old is not None else 1
    # Every load that asks budget() for its share: each page's 1 and 50 users on each server,
    # then the ceiling's pages; and wrk's runs of each, when it is installed.
    wrk_runs_each = min(runs, wrk.RUNS) if wrk.path() is not None else 0
    loads_left = (len(PAGES) * servers + len(CEILING)) * wrk_runs_each + (
        len(PAGES) * servers * len(USERS) + len(CEILING)
    ) * runs

    def budget() -> float:
        """This load's share of the time left (B4 runs last), at most RUN_BUDGET_S."""
        nonlocal loads_left
        share = max(5.0, ctx.time_left()) / max(1, loads_left)
        loads_left -= 1
        return min(RUN_BUDGET_S, share)

    try:
        for name, url in PAGES.items():
            by_users = measure(ctx, url, ctx.web_url, runs, budget)
            for users, m in by_users.items():
                log(
                    f"  {name}, {users} user(s): p50 {m['p50_ms']['median']} ms, "
                    f"p95 {m['p95_ms']['median']} ms, {m['per_second']['median']} req/s, "
                    f"errors {m['errors']}"
                )
            page: dict[str, Any] = {"page": name, "url": url, "users": by_users}
            if old is not None:
                then = measure(ctx, url, baseline["url"], runs, budget)
                page["baseline"] = {"users": then, **against(by_users, then)}
                log(
                    f"  {name}, baseline {baseline['commit']}: p50 {then['1']['p50_ms']['median']}"
                    f" ms, {then['50']['per_second']['median']} req/s; today's throughput "
                    f"{page['baseline']['throughput_50_ratio']}× the baseline's"
                )
            one, fifty = by_users["1"]["p95_ms"]["median"], by_users["50"]["p95_ms"]["median"]
            page["p95_ratio_50_over_1"] = round(fifty / one, 1) if one else None
            page["anatomy"] = anatomy(ctx.shared["admin_id"], url)
            out.append(page)
        limits = ceiling(ctx, runs, budget)
    finally:
        if old is not None:
            old.stop()
    return {
        "pages": out,
        "ceiling": limits,
        "baseline": baseline,
        "errors": sum(p["users"][u]["errors"] for p in out for u in p["users"])
        + sum(p["users"]["50"].get("wrk", {}).get("errors", 0) for p in out),
        "client": "Python threads, one httpx keep-alive connection per user, HTML only",
        "wrk": (
            f"wrk, {wrk.THREADS} threads, {wrk.CONNECTIONS} keep-alive connections, runs of "
            f"{wrk.COMPLETIONS} requests' worth at the Python client's rate "
            f"({wrk.SECONDS}-{wrk.MAX_SECONDS} s)"
            if wrk.path() is not None
            else None
        ),
    }
