"""B1: the Cost per Issue page over a large ledger, against the one raw query a naive page runs.

Data: ``bench.seed_costs`` loads ``--events`` ledger rows (1,000,000 by default) for ``--issues``
issues and ``--sessions`` sessions over 90 days into the org ``bench`` (timed: that is the
seeding figure), then ``VACUUM ANALYZE`` on the loaded tables, as autovacuum would soon do.

Measured, alternately, ``runs`` times after two warm-ups each:

- the page: ``GET /analytics/cost-per-issue/`` through gunicorn as a finance user (last 30
  days, all pools, sorted by cost: the top 50 rows, the totals and both charts), full response;
- the naive query: ``SELECT issue_id, sum(amount) FROM billing_costevent WHERE org_id = …
  AND occurred_at in the same 30 days GROUP BY issue_id``, all rows fetched over psycopg.

The ratio page ÷ query is the figure (target ≤ 1.0). For the diagnosis, the report function
(``billing.analytics.cost_per_issue``, every issue: what the CSV runs) is also timed in this
process with its queries, and so is what the page runs (``cost_per_issue_page``: one page of
rows ranked in the database), whose total must also equal the naive query's sum.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from bench.common import Context, compact_sql, figure, log, login_cookie, member, ms

ORG = "bench"
NAIVE_SQL = (
    "SELECT issue_id, sum(amount) FROM billing_costevent "
    "WHERE org_id = %s AND occurred_at > %s AND occurred_at <= %s GROUP BY issue_id"
)
LOADED_TABLES = (
    "billing_costevent",
    "billing_dailycost",
    "agent_sessions_session",
    "agent_sessions_runninginterval",
    "agent_sessions_issue",
)


def seed(ctx: Context) -> dict[str, Any]:
    import psycopg

    from bench.seed_costs import describe, seed_costs
    from rensei.models import Organization

    a = ctx.args
    existing = Organization.objects.filter(slug=ORG).first()
    if a.reuse_db and existing is not None:
        log("reusing the seeded organisation of an earlier run")
        return login(ctx, existing) | {"reused": True}
    log(f"seeding {a.events:,} ledger rows, {a.sessions:,} sessions, {a.issues:,} issues …")
    started = time.monotonic()
    summary = seed_costs(
        events=a.events,
        issues=a.issues,
        sessions=a.sessions,
        days=90,
        org=ORG,
        prefix="ENG",
        force=True,
    )
    seconds = time.monotonic() - started
    log(describe(ORG, a.events, a.sessions, summary))
    log(f"seeded in {seconds:.1f} s; VACUUM ANALYZE …")
    started = time.monotonic()
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        for table in LOADED_TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
        rollup_rows = conn.execute("SELECT count(*) FROM billing_dailycost").fetchone()
    vacuum = time.monotonic() - started

    return login(ctx, Organization.objects.get(slug=ORG)) | {
        "events": a.events,
        "issues": a.issues,
        "sessions": a.sessions,
        "days": 90,
        "seconds": round(seconds, 1),
        "rows_per_second": round(a.events / seconds),
        "bulk_path": summary["bulk"],
        "top1_percent_issues_share": round(summary["top1_share"], 3),
        "rollup_rows": rollup_rows[0] if rollup_rows else None,
        "vacuum_analyze_seconds": round(vacuum, 1),
    }


def login(ctx: Context, org: Any) -> dict[str, Any]:
    """The org's admin and finance users, logged in (their session cookies in ctx.shared)."""
    from rensei.models import Role

    admin = member(org, "bench-admin", Role.ADMIN)
    finance = member(org, "bench-finance", Role.FINANCE)
    ctx.shared.update(
        org_id=org.pk,
        admin_id=admin.pk,
        cookies={"admin": login_cookie(admin), "finance": login_cookie(finance)},
    )
    return {}


def run(ctx: Context) -> dict[str, Any]:
    import httpx
    import psycopg
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.analytics import CostFilter, cost_per_issue
    from billing.forms import today_utc
    from billing.outcome_costs import outcome_report
    from billing.periods import period_for
    from billing.ranking import cost_per_issue_page

    org_id = ctx.shared["org_id"]
    period = period_for("30d", today_utc())
    params = (org_id, period.start, period.end)
    web = httpx.Client(
        base_url=ctx.web_url,
        cookies={"sessionid": ctx.shared["cookies"]["finance"]},
        trust_env=False,
        timeout=300,
    )
    db = psycopg.connect(ctx.dsn, autocommit=True)

    def page() -> tuple[float, int]:
        t = time.perf_counter()
        resp = web.get("/analytics/cost-per-issue/")
        elapsed = time.perf_counter() - t
        if resp.status_code != 200 or "Cost per Issue" not in resp.text:
            raise RuntimeError(f"Cost per Issue answered {resp.status_code}")
        return elapsed, len(resp.content)

    def outcomes() -> float:
        """The page's Cost by outcome section, which it loads on its own (and polls)."""
        t = time.perf_counter()
        resp = web.get("/analytics/cost-per-issue/outcomes/")
        elapsed = time.perf_counter() - t
        if resp.status_code != 200 or "outcome" not in resp.text:
            raise RuntimeError(f"Cost by outcome answered {resp.status_code}")
        return elapsed

    def naive() -> tuple[float, list[Any]]:
        t = time.perf_counter()
        rows = db.execute(NAIVE_SQL, params).fetchall()
        return time.perf_counter() - t, rows

    try:
        for _ in range(2):
            page()
            outcomes()
            naive()
        pages: list[float] = []
        outcome_times: list[float] = []
        sqls: list[float] = []
        size = 0
        rows: list[Any] = []
        for i in range(ctx.args.runs):
            elapsed, size = page()
            pages.append(elapsed)
            outcome_times.append(outcomes())
            elapsed_sql, rows = naive()
            sqls.append(elapsed_sql)
            log(
                f"  run {i + 1}: page {ms(elapsed):.0f} ms, Cost by outcome "
                f"{ms(outcome_times[-1]):.0f} ms, naive SQL {ms(elapsed_sql):.0f} ms"
            )
        explain = db.execute("EXPLAIN (ANALYZE, BUFFERS) " + NAIVE_SQL, params).fetchall()
        ledger_rows = db.execute(
            "SELECT count(*) FROM billing_costevent WHERE org_id = %s "
            "AND occurred_at > %s AND occurred_at <= %s",
            params,
        ).fetchone()
    finally:
        web.close()
        db.close()

    def in_process(report_of: Any) -> tuple[list[float], list[dict[str, Any]], Any]:
        """A report function alone, in this process: its times, its last run's queries."""
        times, queries, report = [], [], None
        for _ in range(min(ctx.args.runs, 5)):
            with CaptureQueriesContext(connection) as captured:
                t = time.perf_counter()
                report = report_of(CostFilter(org_id, period))
                times.append(time.perf_counter() - t)
            queries = [
                {"ms": round(float(q["time"]) * 1000, 1), "sql": compact_sql(q["sql"])}
                for q in captured.captured_queries
            ]
        return times, queries, report

    fn_times, queries, report = in_process(cost_per_issue)
    # What the page itself runs: one page of rows ranked in the database.
    page_times, page_queries, shown = in_process(cost_per_issue_page)
    outcome_fn_times, outcome_queries, _ = in_process(outcome_report)
    naive_total = sum((r[1] for r in rows), Decimal(0))
    ratios = [p / s for p, s in zip(pages, sqls, strict=True)]
    page_fig, sql_fig = figure([ms(x) for x in pages], "ms"), figure([ms(x) for x in sqls], "ms")
    return {
        "period": f"{period.first_day} – {period.last_day} (30 days)",
        "ledger_rows_in_period": ledger_rows[0] if ledger_rows else None,
        "issues_in_period": len(rows),
        "page_ms": page_fig,
        "naive_sql_ms": sql_fig,
        "ratio_per_run": figure(ratios, "×", 2),
        "ratio_of_medians": round(page_fig["median"] / sql_fig["median"], 2),
        "target_ratio": 1.0,
        "page_kib": round(size / 1024, 1),
        "report_function_ms": figure([ms(x) for x in fn_times], "ms"),
        "report_queries": queries,
        # The Cost per Issue total equals the ledger sum for the same filter, to the digit.
        "totals_match_ledger": report.totals.amount == naive_total.quantize(report.totals.amount),
        "page_function_ms": figure([ms(x) for x in page_times], "ms"),
        "page_queries": page_queries,
        "page_totals_match_ledger": shown.totals.amount
        == naive_total.quantize(shown.totals.amount),
        "naive_sql_plan": [line[0] for line in explain],
        "outcomes_ms": figure([ms(x) for x in outcome_times], "ms"),
        "outcomes_ratio_per_run": figure(
            [o / q for o, q in zip(outcome_times, sqls, strict=True)], "×", 2
        ),
        "outcomes_function_ms": figure([ms(x) for x in outcome_fn_times], "ms"),
        "outcomes_queries": outcome_queries,
    }
