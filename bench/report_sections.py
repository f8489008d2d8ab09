"""The sections of docs/performance.md for each benchmark, B1 to B4 (``bench.report``
puts them together): the figures of one run, and the measured cause where one missed.
"""

from __future__ import annotations

from typing import Any

from bench.b4_pages_load import FLOOR_PAGE
from bench.report_format import fig, table

LOAD_PATHS = {
    True: "COPY, row triggers replaced by set-based equivalents",
    False: "COPY with the row triggers",
}


def outcome_rows(b: dict[str, Any]) -> list[list[Any]]:
    """Cost per Issue's Cost by outcome section, which the page loads on its own."""
    if "outcomes_ms" not in b:
        return []
    queries = b.get("outcomes_queries", [])
    slowest = max((q["ms"] for q in queries), default=0)
    return [
        [
            "Cost by outcome: `GET /analytics/cost-per-issue/outcomes/`, gunicorn (the page "
            "loads the section on its own and polls it)",
            fig(b["outcomes_ms"]),
        ],
        ["ratio Cost by outcome ÷ naive SQL (per run)", fig(b["outcomes_ratio_per_run"])],
        [
            f"`billing.outcome_costs.outcome_report`, in process ({len(queries)} queries, the "
            f"slowest {slowest:g} ms)",
            fig(b["outcomes_function_ms"]),
        ],
    ]


def b1(r: dict[str, Any]) -> list[str]:
    b, s = r.get("b1"), r.get("seed")
    if not b or "page_ms" not in b or not s:
        return []
    queries = b.get("report_queries", [])
    db_ms = sum(q["ms"] for q in queries)
    out = [
        "## B1: Cost per Issue over a million ledger rows",
        "",
        f"`python -m bench.seed_costs --events {s['events']} --issues {s['issues']} --sessions "
        f"{s['sessions']} --days {s['days']}` loaded the ledger in **{s['seconds']} s** "
        f"({s['rows_per_second']:,} rows/s, one run; "
        f"{LOAD_PATHS[bool(s.get('bulk_path'))]}), "
        f"then `VACUUM ANALYZE` took {s['vacuum_analyze_seconds']} s. The top 1% of issues carry "
        f"{s['top1_percent_issues_share']:.0%} of the cost; the daily rollup holds "
        f"{s['rollup_rows']:,} rows for the whole org.",
        "",
        f"Period: {b['period']}: {b['ledger_rows_in_period']:,} ledger rows on "
        f"{b['issues_in_period']:,} issues. The page's total equals the naive query's sum to the "
        f"digit: **{'yes' if b['totals_match_ledger'] else 'NO'}**.",
        "",
        *table(
            ["measurement", "median (min – max)"],
            [
                [
                    f"page: `GET /analytics/cost-per-issue/`, gunicorn ({b['page_kib']} KiB)",
                    fig(b["page_ms"]),
                ],
                [
                    "naive SQL: `SELECT issue_id, sum(amount) … GROUP BY issue_id`, all rows",
                    fig(b["naive_sql_ms"]),
                ],
                ["**ratio page ÷ naive SQL** (per run)", fig(b["ratio_per_run"])],
                [
                    "full report `billing.analytics.cost_per_issue` (every issue: the CSV, the "
                    "issue sort), in process",
                    fig(b["report_function_ms"]),
                ],
                *(
                    [
                        [
                            "what the page runs, `cost_per_issue_page` (one page ranked in the "
                            "database), in process",
                            fig(b["page_function_ms"]),
                        ]
                    ]
                    if "page_function_ms" in b
                    else []
                ),
                *outcome_rows(b),
            ],
        ),
        *page_queries(b),
        f"The full report's {len(queries)} queries (last run, {db_ms:g} ms in the database):",
        "",
        *table(["ms", "query"], [[q["ms"], f"`{q['sql'][:160]}…`"] for q in queries]),
    ]
    if b["ratio_of_medians"] > 1.0:
        page, fn = b["page_ms"]["median"], b["report_function_ms"]["median"]
        slowest = max(queries, key=lambda q: q["ms"]) if queries else None
        out += [
            f"**The page misses its target: {b['ratio_of_medians']:g}× the naive query.** "
            f"Of its {page:g} ms (median): {db_ms:g} ms in the report's {len(queries)} queries"
            + (f" (slowest, {slowest['ms']:g} ms: `{slowest['sql'][:160]}…`)" if slowest else "")
            + f", about {max(fn - db_ms, 0):.0f} ms of Python in the report function, and about "
            f"{max(page - fn, 0):.0f} ms around it (session and access checks, the template and "
            "its charts, HTTP).",
            "",
            "What brings a report page under the raw query is reading only what it shows: "
            "rank and limit in SQL on the daily rollup (`ORDER BY sum(amount) DESC LIMIT 50`), "
            "names for the shown rows only, and session figures from a rollup maintained in "
            "the same transaction as the session changes instead of a scan of the sessions.",
            "",
        ]
    return out


def page_queries(b: dict[str, Any]) -> list[str]:
    """The queries of what the page runs, and whether its total is the ledger's."""
    queries = b.get("page_queries")
    if queries is None:
        return []
    same = "yes" if b.get("page_totals_match_ledger") else "NO"
    return [
        f"What the page runs: {len(queries)} queries (last run, "
        f"{sum(q['ms'] for q in queries):g} ms in the database); its total equals the naive "
        f"query's sum to the digit: **{same}**.",
        "",
        *table(["ms", "query"], [[q["ms"], f"`{q['sql'][:160]}…`"] for q in queries]),
    ]


def b2(r: dict[str, Any]) -> list[str]:
    b = r.get("b2")
    if not b or "pages" not in b:
        return []
    rows = [
        [
            p["page"],
            f"`{p['url']}`",
            p["queries_10"],
            p["queries_10000"],
            "equal" if p["equal"] else "**grows**",
            f"{p.get('rows_shown_10', '?')} / {p.get('rows_shown_10000', '?')}",
        ]
        for p in b["pages"]
    ]
    return [
        "## B2: query budgets of the list pages",
        "",
        "Queries per request (one warm request each, Django's test client in process), for an "
        "organisation with 10 and one with 10,000 sessions, ledger rows, issues, capacity "
        "pools, API tokens and audit events. Deterministic, so measured once.",
        "",
        *table(["page", "URL", "10 rows", "10,000 rows", "", "rows shown (10 / 10,000)"], rows),
        "Rows shown: `<tr>` elements in the HTML (headers and totals included), results for "
        "the API (limit 100); each page shows at most one page of rows.",
        "",
    ]


def b3_targets(b: dict[str, Any], latency_ms: int) -> tuple[float, float, float | None]:
    """(throughput ratio ≥, overhead p50 ≤, overhead p95 ≤ or None) for one added latency;
    results from before the per-latency targets carry one ratio and one overhead."""
    t = b.get("targets", {})
    if "overhead_p50_ms_max" not in t:
        return t.get("throughput_ratio_min", 0.8), t.get("overhead_ms_max", 25), None
    ratio = t["throughput_ratio_min"]
    ratio = ratio.get(str(latency_ms), 0.95) if isinstance(ratio, dict) else ratio
    return ratio, t["overhead_p50_ms_max"], t["overhead_p95_ms_max"]


def b3_missed(b: dict[str, Any], x: dict[str, Any]) -> bool:
    ratio, p50, p95 = b3_targets(b, x["added_create_latency_ms"])
    over95 = x.get("overhead_p95_ms", {}).get("median")
    return (
        x["throughput_ratio"]["median"] < ratio
        or x["overhead_ms"]["median"] > p50
        or (p95 is not None and over95 is not None and over95 > p95)
    )


def _pair(values: list[float]) -> str:
    return " / ".join(f"{v:g}" for v in values)


def b3(r: dict[str, Any]) -> list[str]:
    b = r.get("b3")
    if not b or "by_latency" not in b:
        return []
    rows = []
    alone = f", {b['latency_dispatchers']} dispatchers" if "latency_dispatchers" in b else ""
    for x in b["by_latency"]:
        lat = f"+{x['added_create_latency_ms']} ms"
        rows += [
            [lat, "Rensei: sessions/s", fig(x["rensei_per_second"], "")],
            *(
                [
                    [lat, "Rensei: request → running p50, with the queue", fig(x["queued_p50_ms"])],
                    [lat, "Rensei: request → running p95, with the queue", fig(x["queued_p95_ms"])],
                ]
                if "queued_p50_ms" in x
                else []
            ),
            [lat, f"Rensei: request → running p50{alone}", fig(x["rensei_p50_ms"])],
            [lat, f"Rensei: request → running p95{alone}", fig(x["rensei_p95_ms"])],
            [lat, f"API answer (POST → 202) p50{alone}", fig(x["api_answer_p50_ms"])],
            [lat, "bare `Sandbox.create`: creates/s", fig(x["bare_per_second"], "")],
            [lat, "bare `Sandbox.create` p50", fig(x["bare_p50_ms"])],
            [lat, "bare `Sandbox.create` p95", fig(x["bare_p95_ms"])],
            [lat, "**throughput ratio** Rensei ÷ bare", fig(x["throughput_ratio"])],
            [lat, "**overhead per provision** (p50 − bare p50)", fig(x["overhead_ms"])],
            *(
                [[lat, "**overhead per provision** (p95 − bare p95)", fig(x["overhead_p95_ms"])]]
                if "overhead_p95_ms" in x
                else []
            ),
            [
                lat,
                "errors / sandboxes left after cleanup",
                f"{x['error_count']} / {x['sandboxes_left']}",
            ],
            [lat, "runs done (planned)", f"{x.get('runs', '?')} ({x.get('runs_planned', '?')})"],
            *(
                [[lat, "machine load average, 1 min (start / end)", _pair(x["load_average_1m"])]]
                if "load_average_1m" in x
                else []
            ),
        ]
    first = b["by_latency"][0]
    out = [
        "## B3: provisioning throughput",
        "",
        f"{first['sessions_per_run']} sessions per run through `POST /api/v1/sessions` "
        f"(gunicorn, API token; {b['concurrency']} dispatcher threads in closed loops), "
        f"{b['worker']}, against the E2B emulator in its own process with the added `create` "
        f"latency shown; in the same run, {first['sessions_per_run']} bare SDK "
        f"`Sandbox.create` calls on {b.get('bare_threads', b['concurrency'])} threads against "
        "the same emulator.",
        "",
        "The emulator is served with TCP_NODELAY: `EmulatorServer` binds its socket without "
        "`IPPROTO_TCP`, so asyncio leaves Nagle's algorithm on and every SDK call with a "
        "response body on a kept-alive connection waits ~40 ms for the client's delayed ACK "
        "(`Sandbox.create` 45 ms instead of 2 ms). E2B has no such delay; "
        "`bench/emulator.py` serves the same app from an `IPPROTO_TCP` socket.",
        "",
        *(
            [
                f"Sessions/s come from the {b['concurrency']}-dispatcher run; there a session "
                "waits for one of the worker's slots while others provision (Little's law: "
                "request → running ≈ dispatchers ÷ throughput), so that run's latencies are "
                f'shown "with the queue". The overhead comes from a run with '
                f"{b['latency_dispatchers']} dispatchers, as many as the worker has slots. The "
                "emulator keeps its sandboxes as records (no init process per sandbox, whose "
                "start-up took CPU from the processes measured and made creates wait for each "
                "other), and one poller thread watches every dispatcher's session.",
                "",
            ]
            if "latency_dispatchers" in b
            else []
        ),
        *table(["create latency", "measurement", "median (min – max)"], rows),
    ]
    missed = [x for x in b["by_latency"] if b3_missed(b, x)]
    steps = next((x["steps"] for x in b["by_latency"] if x.get("steps")), None)
    if steps:
        out += [
            "Where a provision's time goes, step by step (in process, one at a time, no "
            "added E2B latency; 5 samples). SQL statements as Django captures them on "
            "PostgreSQL, BEGIN and COMMIT included; the API request's also include the job's "
            "intent claim written when the job is published after the commit. The budgets "
            "without those (8 for the create, 8 for the job, plus one outbox INSERT per event) "
            "are asserted in `tests/sessions_engine/test_query_budgets.py`:",
            "",
            *table(
                ["step", "time", "SQL queries", "time in the database"],
                [
                    [
                        "API request `POST /api/v1/sessions` (token, issue, session, "
                        "transitions, audit, dispatch, commit, enqueue)",
                        fig(steps["api_request_ms"]),
                        steps["api_queries"],
                        fig(steps["api_db_ms"]),
                    ],
                    [
                        "provision job (`sessions.jobs.provision`: `Sandbox.create`, record "
                        "the sandbox, open the interval, audit, then `get_info` to confirm the "
                        "template's sizes and the start)",
                        fig(steps["job_ms"]),
                        steps["job_queries"],
                        fig(steps["job_db_ms"]),
                    ],
                    ["bare `Sandbox.create`", fig(steps["bare_create_ms"]), "", ""],
                ],
            ),
        ]
    if missed:
        out += [
            "**Targets missed.** A provision through Rensei is a chain of sequential steps "
            "(above), each paying database round trips and commits, plus the hop through "
            "Redis to a worker process, and after the session is running one more E2B call "
            "(`get_info`, confirming the vCPU, memory and start) inside the worker slot. The "
            "bare loop pays only the create. On two cores shared by PostgreSQL, Redis, "
            "gunicorn, the worker, the "
            "emulator and the load generator, that chain costs more than the whole create; "
            "compare the bare create's own p50 with the emulator's added latency above to see "
            "how much the run's cores were taken by other work.",
            "",
        ]
    return out


def b4(r: dict[str, Any]) -> list[str]:
    b = r.get("b4")
    if not b or "pages" not in b:
        return []
    rows = []
    for p in b["pages"]:
        one, fifty = p["users"]["1"], p["users"]["50"]
        rows.append(
            [
                p["page"],
                fig(one["p50_ms"]),
                fig(one["p95_ms"]),
                fig(fifty["p50_ms"]),
                fig(fifty["p95_ms"]),
                f"{p['p95_ratio_50_over_1']}×",
                fig(fifty["per_second"], "req/s"),
                one["errors"] + fifty["errors"],
                f"{one['requests_per_run']} / {fifty['requests_per_run']}",
            ]
        )
    return [
        "## B4: pages under load",
        "",
        "The B1 organisation (a million ledger rows, 100,000 sessions) as its admin, through "
        f"gunicorn on loopback. {b['client']}. 1 user: 20 requests per page per run; 50 users: "
        "3 requests each per run (150), after a warm-up.",
        "",
        *table(
            [
                "page",
                "1 user p50",
                "1 user p95",
                "50 users p50",
                "50 users p95",
                "p95 50 ÷ 1",
                "50 users throughput",
                "errors",
                "requests per run (1 / 50 users)",
            ],
            rows,
        ),
        "One request of each page in process (Django's test client, after the load), with "
        "its slowest queries:",
        "",
        *table(
            ["page", "request", "queries", "in the database", "slowest queries (ms)"],
            [
                [
                    p["page"],
                    f"{p['anatomy']['request_ms']:g} ms",
                    p["anatomy"]["queries"],
                    f"{p['anatomy']['db_ms']:g} ms",
                    "<br>".join(
                        f"{q['ms']:g}: `{q['sql'][:120]}…`" for q in p["anatomy"]["slowest"]
                    ),
                ]
                for p in b["pages"]
                if p.get("anatomy")
            ],
        ),
        *b4_baseline(b),
        *b4_ceiling(b),
        *dominated(b["pages"]),
        "With 50 users on two cores the server is saturated: requests queue, so the 50-user "
        "latency is roughly the single-user time × the users waiting ahead ÷ the cores; the "
        "throughput column is the server's capacity for that page.",
        "",
    ]


def b4_baseline(b: dict[str, Any]) -> list[str]:
    """The same pages served by the baseline commit's code, measured in the same run."""
    base = b.get("baseline") or {}
    commit = base.get("commit", "?")
    if "error" in base:
        return [f"**Baseline `{commit}` not measured:** `{base['error']}`", ""]
    rows = [
        [
            p["page"],
            f"{p['baseline']['p50_1_ms']:g} ms",
            f"{p['users']['1']['p50_ms']['median']:g} ms",
            f"{p['baseline']['per_second_50']:g} req/s",
            f"{p['users']['50']['per_second']['median']:g} req/s",
            f"{p['baseline']['throughput_50_ratio']:g}×",
            p["baseline"]["errors"],
        ]
        for p in b["pages"]
        if p.get("baseline")
    ]
    if not rows:
        return []
    return [
        f"Against the baseline: the code of commit `{commit}` (the one issue #20 quotes), "
        "served by a second gunicorn of the same size against the same database and login "
        "in the same run, loaded the same way right after today's code, page by page "
        "(`bench/b4_baseline.py`):",
        "",
        *table(
            [
                "page",
                f"1 user p50, `{commit}`",
                "1 user p50, today",
                f"50 users, `{commit}`",
                "50 users, today",
                "today ÷ baseline",
                "baseline errors",
            ],
            rows,
        ),
        *_wrk_baseline(b["pages"], commit),
        *[
            f"- **{p['page']}** is {p['baseline']['throughput_50_ratio']:g}× the baseline's "
            f"throughput (target ≥ 3×). One request in process takes "
            f"{p['anatomy']['request_ms']:g} ms: {p['anatomy']['db_ms']:g} ms in its "
            f"{p['anatomy']['queries']} queries and "
            f"{max(p['anatomy']['request_ms'] - p['anatomy']['db_ms'], 0):.1f} ms of Python "
            "(middleware, the ORM building the queries, template rendering); on two cores "
            "shared with the database and the load generator, that sum bounds the requests "
            "per second."
            for p in b["pages"]
            if p.get("baseline", {}).get("throughput_50_ratio") is not None
            and p["baseline"]["throughput_50_ratio"] < 3
            and p.get("anatomy")
        ],
        "",
    ]


def b4_ceiling(b: dict[str, Any]) -> list[str]:
    """What the machine and the harness give any request, against each page's 3× target,
    by each client."""
    limits = b.get("ceiling") or []
    if not limits:
        return []
    lines = [*_budget_lines(b["pages"], limits, "")]
    if all("wrk" in c for c in limits):
        lines += _budget_lines(b["pages"], limits, "wrk")
    if not lines:
        return []
    wrk_rate = [fig(c["wrk"]["per_second"], "req/s") if "wrk" in c else "n/a" for c in limits]
    return [
        "What any request gets, in the same run, loaded the same way at 50 users "
        "(`CEILING` in `bench/b4_pages_load.py`):",
        "",
        *table(
            ["request", "50 users, Python client", "50 users, wrk", "errors"],
            [
                [
                    f"{c['page']} (`{c['url']}`)",
                    fig(c["per_second_50"], "req/s"),
                    rate,
                    c["errors"] + c.get("wrk", {}).get("errors", 0),
                ]
                for c, rate in zip(limits, wrk_rate, strict=True)
            ],
        ),
        *lines,
        "",
    ]


def _budget_lines(
    pages: list[dict[str, Any]], limits: list[dict[str, Any]], client: str
) -> list[str]:
    """At saturation a request costs the machine 1 ÷ throughput: the lightest page behind the
    login costs the floor; 3× the baseline's throughput leaves a page 1 ÷ target − floor of
    its own work, against 1 ÷ today's throughput − floor today. ``client``: "" for the
    Python client's figures, "wrk" for wrk's."""

    def rate(fifty: dict[str, Any]) -> Any:
        """The 50 users' median throughput by this client (None when it was not measured)."""
        block = fifty.get(client, {}) if client else fifty
        return block.get("per_second", {}).get("median")

    floor_page = next((c for c in limits if c["page"] == FLOOR_PAGE), None)
    if floor_page is None:
        return []
    # A ceiling row keeps the Python client's figure as per_second_50, wrk's as a page does.
    floor_rate = rate(floor_page) if client else floor_page["per_second_50"]["median"]
    by = f" by {client}" if client else " by the Python client"
    lines = []
    for p in pages:
        base = p.get("baseline", {}).get(f"{client}_per_second_50" if client else "per_second_50")
        now = rate(p["users"]["50"])
        if not base or not now or not floor_rate:
            continue
        target = 3 * base
        floor_ms, now_ms = 1000 / floor_rate, 1000 / now
        if target >= floor_rate:
            verdict = (
                f"more than the {FLOOR_PAGE} serves ({floor_rate:g} req/s): "
                "no work of this page's own fits in that budget, so the target cannot be met "
                "by this page's code on this machine and harness"
            )
        else:
            left = 1000 / target - floor_ms
            verdict = (
                f"{1000 / target:.1f} ms of the machine per request, of which the {FLOOR_PAGE} "
                f"takes {floor_ms:.1f}: {left:.1f} ms are left for the "
                f"page's own work, which takes {max(now_ms - floor_ms, 0):.1f} ms today"
            )
        lines.append(f"- **{p['page']}**{by}: 3× the baseline is {target:.0f} req/s, {verdict}.")
    return lines


def _wrk_baseline(pages: list[dict[str, Any]], commit: str) -> list[str]:
    rows = [
        [
            p["page"],
            f"{p['baseline']['wrk_per_second_50']:g} req/s",
            fig(p["users"]["50"]["wrk"]["per_second"], "req/s"),
            f"{p['baseline']['wrk_throughput_50_ratio']:g}×",
        ]
        for p in pages
        if p.get("baseline", {}).get("wrk_throughput_50_ratio") is not None
    ]
    if not rows:
        return []
    return [
        "The same 50 users' throughput measured by wrk (`bench/wrk.py`: a client in C, which "
        "leaves the server the CPU the Python client takes), on the same servers right after:",
        "",
        *table(["page", f"50 users, `{commit}`", "50 users, today", "today ÷ baseline"], rows),
    ]


def dominated(pages: list[dict[str, Any]]) -> list[str]:
    """Pages whose single request is mostly one query: say which."""
    out = []
    for p in pages:
        a = p.get("anatomy")
        if not a or not a["slowest"]:
            continue
        top = a["slowest"][0]
        if top["ms"] >= 0.5 * a["request_ms"]:
            out.append(
                f"- **{p['page']}**: one query is {top['ms']:g} of its {a['request_ms']:g} ms: "
                f"`{top['sql']}`"
            )
    return [*out, ""] if out else []
