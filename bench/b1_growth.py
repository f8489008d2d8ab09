"""B1 growth: the Cost per Issue page as the ledger grows (``python -m bench --grow-events N``).

After the other benchmarks (B4 measured the seeded size), B1 is measured again at the seeded
size, then ``bench.seed_costs`` appends ``N`` more ledger rows to the same organisation (its
issues reused, new sessions in the same proportion of rows per session, over the same 90
days: the same issues get busier), ``VACUUM ANALYZE`` runs on the loaded tables, and B1 is
measured once more. The figures: the page at the larger size ÷ the page at the seeded size
(target ≤ 1.2: the page's work follows the issues and days it shows, not the ledger's size)
and the page ÷ the naive ``GROUP BY`` at the larger size (target ≤ 0.3).

The load is skipped, and says so, when the run's time budget cannot hold it (at
``MIN_ROWS_PER_S`` rows per second, plus the two measurements). The database keeps the larger
ledger: a later ``--reuse-db`` run measures that size.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Context, log

MIN_ROWS_PER_S = 3_500  # the slowest load seen on the shared 2-core machine (3,837 rows/s)
MEASURE_S = 60.0
KEPT = (
    "page_ms",
    "naive_sql_ms",
    "ratio_of_medians",
    "ledger_rows_in_period",
    "issues_in_period",
    "outcomes_ms",
)


def seconds_needed(rows: int) -> float:
    """What the growth step may take: the load at the slowest rate seen, and two B1 runs."""
    return rows / MIN_ROWS_PER_S + 2 * MEASURE_S


def run(ctx: Context) -> dict[str, Any]:
    import psycopg

    from bench import b1_analytics
    from bench.seed_costs import describe, seed_costs

    a = ctx.args
    grow = a.grow_events
    sessions = max(1, round(grow * a.sessions / a.events))
    needed = seconds_needed(grow)
    if ctx.time_left() < needed:
        return {
            "skipped": f"{grow:,} more rows need about {needed:.0f} s at {MIN_ROWS_PER_S:,} "
            f"rows/s; {max(0.0, ctx.time_left()):.0f} s of the run's budget were left"
        }
    log(f"  B1 at {a.events:,} rows again, just before the load …")
    before = b1_analytics.run(ctx)
    log(f"  appending {grow:,} ledger rows ({sessions:,} sessions) …")
    started = time.monotonic()
    summary = seed_costs(
        events=grow,
        issues=a.issues,
        sessions=sessions,
        days=90,
        org=b1_analytics.ORG,
        prefix="ENG",
        seed=2,  # other sessions than the first load's
        force=True,
    )
    seconds = time.monotonic() - started
    log(describe(b1_analytics.ORG, grow, sessions, summary))
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        for table in b1_analytics.LOADED_TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
        row = conn.execute("SELECT count(*) FROM billing_costevent").fetchone()
    log(f"  B1 at {a.events + grow:,} rows …")
    after = b1_analytics.run(ctx)
    growth = after["page_ms"]["median"] / before["page_ms"]["median"]
    return {
        "events_before": a.events,
        "events_added": grow,
        "sessions_added": sessions,
        "ledger_rows_after": row[0] if row else None,
        "load_seconds": round(seconds, 1),
        "rows_per_second": round(grow / seconds),
        "before": {k: before[k] for k in KEPT},
        "after": {k: after[k] for k in KEPT}
        | {
            "report_queries": after["report_queries"],
            "outcomes_queries": after["outcomes_queries"],
        },
        "page_growth_ratio": round(growth, 2),
        "target_growth_ratio": 1.2,
        "page_over_naive_after": after["ratio_of_medians"],
        "target_page_over_naive": 0.3,
        "totals_match_ledger": after["totals_match_ledger"],
    }
