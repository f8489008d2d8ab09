"""docs/performance.md's B1 growth section (``bench.b1_growth``), when the run measured it."""

from __future__ import annotations

from typing import Any

from bench.report_format import fig, ok, table


def b1_growth(r: dict[str, Any]) -> list[str]:
    g = r.get("b1_growth")
    if not g:
        return []
    head = ["## B1 growth: Cost per Issue as the ledger grows", ""]
    if "skipped" in g or "error" in g:
        return [*head, f"Not measured in this run: {g.get('skipped') or g.get('error')}.", ""]
    before, after = g["before"], g["after"]
    rows_before, rows_after = g["events_before"], g["ledger_rows_after"]
    growth, over = g["page_growth_ratio"], g["page_over_naive_after"]
    run = g.get("separate_run")
    where = (
        [
            f"Measured in a run of its own (`{run['command']}`, {run['generated_at']}, commit "
            f"`{run['commit']}`, load average {run['load_start']} at the start and "
            f"{run['load_end']} at the end); the rest of this page is from the run above.",
            "",
        ]
        if run
        else []
    )
    queries = after.get("page_queries") or after["report_queries"]
    which = "page's" if after.get("page_queries") else "report's"
    return [
        *head,
        *where,
        f"Measured at {rows_before:,} ledger rows, then `bench.seed_costs` appended "
        f"{g['events_added']:,} rows on {g['sessions_added']:,} new sessions for the same issues "
        f"over the same 90 days in **{g['load_seconds']} s** ({g['rows_per_second']:,} rows/s), "
        f"and the same page was measured again at {rows_after:,} rows. Both measurements are "
        "B1's (page through gunicorn, naive query over psycopg, alternately).",
        "",
        *table(
            ["ledger rows", "rows in the period", "issues", "page", "naive SQL", "page ÷ naive"],
            [
                [
                    f"{n:,}",
                    f"{m['ledger_rows_in_period']:,}",
                    f"{m['issues_in_period']:,}",
                    fig(m["page_ms"]),
                    fig(m["naive_sql_ms"]),
                    f"{m['ratio_of_medians']:g}×",
                ]
                for n, m in ((rows_before, before), (rows_after, after))
            ],
        ),
        *table(
            ["figure", "result", "target", ""],
            [
                [
                    f"page at {rows_after:,} ÷ page at {rows_before:,} rows",
                    f"{growth:g}×",
                    f"≤ {g['target_growth_ratio']:g}",
                    ok(growth <= g["target_growth_ratio"]),
                ],
                [
                    f"page ÷ naive SQL at {rows_after:,} rows",
                    f"{over:g}×",
                    f"≤ {g['target_page_over_naive']:g}",
                    ok(over <= g["target_page_over_naive"]),
                ],
            ],
        ),
        f"The {which} queries at the larger size (last run):",
        "",
        *table(["ms", "query"], [[q["ms"], f"`{q['sql'][:160]}…`"] for q in queries]),
        *outcomes_growth(g),
    ]


def outcomes_growth(g: dict[str, Any]) -> list[str]:
    """Cost by outcome at both sizes (no target: it follows the period's rows), when measured."""
    before, after = g["before"], g["after"]
    if "outcomes_ms" not in before or "outcomes_ms" not in after:
        return []
    growth = after["outcomes_ms"]["median"] / before["outcomes_ms"]["median"]
    slowest = max(after.get("outcomes_queries", []), key=lambda q: q["ms"], default=None)
    return [
        "",
        "Cost per Issue's Cost by outcome section (`GET /analytics/cost-per-issue/outcomes/`, "
        "which the page loads on its own), measured alternately with the page:",
        "",
        *table(
            ["ledger rows", "Cost by outcome"],
            [
                [f"{g['events_before']:,}", fig(before["outcomes_ms"])],
                [f"{g['ledger_rows_after']:,}", fig(after["outcomes_ms"])],
            ],
        ),
        f"It grows {growth:.1f}× with the period's ledger rows "
        f"({before['ledger_rows_in_period']:,} → {after['ledger_rows_in_period']:,}): it sums "
        "the period's rows by session and works out each billed session's outcome"
        + (f"; its slowest query at the larger size took {slowest['ms']:g} ms." if slowest else ".")
        + " No target is set for it; a rollup per session would make it follow the sessions "
        "instead of the rows.",
        "",
    ]
