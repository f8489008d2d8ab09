"""Fiona, finance, reads what each issue cost: the report, its filters, its CSV, and no
settings.

The ledger is built through the jobs' own functions (``tests.browser.data``): closed running
intervals emit the rows, exactly as a paused or terminated sandbox does.
"""

from __future__ import annotations

import csv
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, mark_page, same_page, shot
from tests.browser.data import cost_history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CENT = Decimal("0.01")


def money(amount: Decimal | str) -> str:
    """USD to the cent, half up, as a person reads it on the page."""
    return f"${Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"


def hours(seconds: Decimal | str) -> str:
    return f"{(Decimal(seconds) / 3600).quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"


def report_rows(page: Any) -> dict[str, list[str]]:
    """The Cost per Issue table as the user reads it: issue key (or "Unattributed") → the
    sessions, running hours, paused hours, vCPU hours and cost cells."""
    rows = (
        report_table(page)
        .locator("tbody tr, tfoot tr")
        .evaluate_all("""rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))""")
    )
    table = {}
    for cells in rows:
        label = cells[0]
        if label.startswith("Total"):
            key = "Total"
        elif label.startswith("Unattributed"):
            key = "Unattributed"
        else:
            key = label.split()[0]
        table[key] = cells[1:]
    return table


def report_table(page: Any) -> Any:
    return page.get_by_role("table", name=re.compile(r"^Cost per issue"))


def cost_cell(page: Any, key: str) -> Any:
    row = (
        report_table(page)
        .locator("tbody tr")
        .filter(has=page.get_by_role("link", name=key, exact=True))
    )
    return row.locator("td").last


def test_finance_reads_cost_per_issue(live_server, page, fiona, org_a):  # type: ignore[no-untyped-def]
    history = cost_history(org_a)
    base = live_server.url
    login(page, base, "fiona", "pw-fiona")
    nav = page.get_by_role("navigation", name="Main")

    # -- Cost per Issue, last 30 days (the default) ---------------------------------------------
    nav.get_by_role("link", name="Cost per Issue").click()
    expect(page.get_by_role("heading", name="Cost per Issue")).to_be_visible()
    eng1_all = history.amount(issue__key="ENG-1")
    assert eng1_all > 1  # dollars, not rounding noise
    expect(cost_cell(page, "ENG-1")).to_have_text(money(eng1_all))
    expect(cost_cell(page, "ENG-3")).to_have_text(money(history.amount(issue__key="ENG-3")))
    expect(page.locator("#report svg.chart")).to_have_count(2)  # top issues, cost per day
    total = report_table(page).locator("tfoot [data-total]")
    expect(total).to_have_text(money(history.amount(org=org_a)))
    shot(page, "finance-1-cost-per-issue")

    # -- Last 7 days, pool e2b-main: the report swaps in, the URL says so ----------------------
    mark_page(page)
    page.get_by_label("Date range (UTC)").select_option(label="Last 7 days")
    page.get_by_label("Pool").select_option(label="e2b-main")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(rf"range=7d&.*pool={history.main.pk}"))
    expect(page.locator("#report")).to_contain_text("Last 7 days")
    expect(page.locator("#report")).to_contain_text("pool e2b-main")
    eng1_recent = history.amount(session=history.sessions["eng1-recent"])
    expect(cost_cell(page, "ENG-1")).to_have_text(money(eng1_recent))
    expect(page.get_by_role("link", name="ENG-3", exact=True)).to_have_count(0)  # 20 days ago
    assert same_page(page)
    filtered = report_rows(page)

    page.reload()  # a bookmark or a shared link shows the same report
    expect(page.get_by_label("Date range (UTC)")).to_have_value("7d")
    expect(page.get_by_label("Pool")).to_have_value(str(history.main.pk))
    expect(cost_cell(page, "ENG-1")).to_have_text(money(eng1_recent))
    assert report_rows(page) == filtered
    shot(page, "finance-2-filtered")

    # -- The CSV holds the table's numbers ------------------------------------------------------
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert re.fullmatch(
        r"cost-per-issue_\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename
    )
    with Path(download.path()).open(newline="", encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert [r["issue_key"] or "Unattributed" for r in exported] == [
        k for k in filtered if k != "Total"
    ]
    for r in exported:
        assert filtered[r["issue_key"] or "Unattributed"] == [
            r["sessions"],
            hours(r["running_seconds"]),
            hours(r["paused_seconds"]),
            hours(r["vcpu_seconds"]),
            money(r["amount"]),
        ]
    assert filtered["Total"][-1] == money(sum((Decimal(r["amount"]) for r in exported), Decimal(0)))

    # -- Finance sees no settings, and their URLs say so -----------------------------------------
    # Their one setting is Budgets, which finance reads (admins edit).
    expect(nav.get_by_role("link", name="Budgets")).to_have_count(1)
    for name in ("Integrations", "API tokens", "Webhooks", "Execution → Capacity"):
        expect(nav.get_by_role("link", name=name)).to_have_count(0)
    for path in ("/settings/integrations/", "/settings/execution/capacity/"):
        response = page.goto(base + path)
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_text("Your role does not allow this page or action.")).to_be_visible()
