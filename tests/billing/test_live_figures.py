"""The finance pages poll their changing figures: Cost per Issue, an issue's cost, the ledger
and month close. A poll gets its region alone (no layout, no filter form, no date fields),
for the same filters, sort and page, with only that region's queries; new ledger rows show
in the next poll; other orgs' figures never do; a bad query string gets today's fallback."""

from __future__ import annotations

import re
from datetime import date
from html import unescape

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.closing import close_month
from billing.polling import POLL_SECONDS
from tests.billing.helpers import at, ledger_sum, make_issue, make_pool, make_session, run

NOW = at("2025-03-10 12:00")
COST = "/analytics/cost-per-issue/"
LEDGER = "/billing/ledger/"
MONTHS = "/billing/months/"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def data(org_a, org_b, clock):
    pool = make_pool(org_a, "main")
    eng1, eng2 = make_issue(org_a, "ENG-1", "Fix login"), make_issue(org_a, "ENG-2", "Build")
    s1 = make_session(org_a, issue=eng1, pool=pool)
    s2 = make_session(org_a, issue=eng2, pool=pool, vcpu=4)
    run(s1, at("2025-03-09 10:00"), at("2025-03-09 11:00"))
    run(s2, at("2025-03-08 10:00"), at("2025-03-08 12:00"))
    b_issue = make_issue(org_b, "OPS-7", "Org B secret work")
    b_session = make_session(org_b, issue=b_issue, pool=make_pool(org_b, "b-pool"), vcpu=16)
    run(b_session, at("2025-03-09 01:00"), at("2025-03-09 05:00"))
    return {"pool": pool, "eng1": eng1, "eng2": eng2, "s1": s1, "s2": s2, "b_session": b_session}


def poll(client, url: str, region: str):  # type: ignore[no-untyped-def]
    """What htmx sends when the element ``region`` polls ``url``."""
    return client.htmx("get", url, HTTP_HX_TARGET=region, HTTP_HX_TRIGGER=region)


def poll_html(client, url: str, region: str) -> str:  # type: ignore[no-untyped-def]
    resp = poll(client, url, region)
    assert resp.status_code == 200
    html = resp.content.decode()
    assert html.lstrip().startswith(f'<div id="{region}"'), html[:200]
    assert "<html" not in html and "<nav" not in html.split("<table")[0]
    return html


def polls_itself(html: str, region: str) -> tuple[str, int]:
    """The region's own poll: the URL it asks and every how many seconds."""
    found = re.search(
        rf'<div id="{region}" hx-get="([^"]*)" hx-trigger="every (\d+)s" data-poll-when-visible '
        r'hx-swap="outerHTML">',
        html,
    )
    assert found, f"#{region} does not poll itself"
    return unescape(found.group(1)), int(found.group(2))


def stat(html: str, label: str) -> str:
    """A stat card's figure, by its label."""
    found = re.search(
        rf'<div class="small text-muted">{label}</div><div class="value"[^>]*>([^<]+)<', html
    )
    assert found, f"no {label!r} card"
    return found.group(1)


def exact_total(html: str) -> str:
    found = re.search(
        r'<div class="small text-muted">Total cost[^<]*</div><div class="value" '
        r'title="([-0-9.]+) USD"',
        html,
    )
    assert found, "no total cost card"
    return found.group(1)


def poll_queries(client, url: str, region: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The SQL a poll runs. Besides the request's own (session, user, membership), only its
    region's: never the layout's (the budget banner) nor the filter form's (the pools)."""
    with CaptureQueriesContext(connection) as ctx:
        assert poll(client, url, region).status_code == 200
    sql = _reads(ctx)
    assert not [q for q in sql if "budgets_" in q or 'FROM "pools_capacitypool"' in q], sql
    return sql


def page_queries(client, url: str) -> list[str]:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return _reads(ctx)


def _reads(ctx: CaptureQueriesContext) -> list[str]:
    """The statements that read, without the ranking's savepoint and its SET LOCALs (which
    only PostgreSQL runs)."""
    bookkeeping = ("SAVEPOINT", "RELEASE SAVEPOINT", "SET LOCAL")
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(bookkeeping)]


# --- Cost per Issue ------------------------------------------------------------------------


def test_cost_per_issue_polls_its_figures_not_the_form_nor_cost_by_outcome(client_as, fiona, data):
    client = client_as(fiona)
    url = COST + "?range=custom&start=2025-03-01&end=2025-03-10&sort=cost&dir=asc&page=1"
    page = client.get(url).content.decode()
    asks, every = polls_itself(page, "cost-figures")
    assert asks == url and every == POLL_SECONDS["cost_per_issue"] >= 15
    # The form and Cost by outcome's lazy section sit outside the polled region.
    figures_at = page.index('<div id="cost-figures"')
    assert page.index('<form id="cost-filters"') < figures_at
    assert page.index('id="cost-by-outcome"') > page.index("</table>", figures_at)

    html = poll_html(client, asks, "cost-figures")
    assert polls_itself(html, "cost-figures") == (url, every)
    # No date field (in band or out of band) to land over what is being typed, no form, and
    # no Cost by outcome to load again.
    assert 'name="start"' not in html and "hx-swap-oob" not in html and "<form" not in html
    assert "cost-by-outcome" not in html and 'hx-trigger="load"' not in html
    # The same sort: ENG-1 (cheaper) before ENG-2, the header saying ascending.
    assert html.index("<strong>ENG-1</strong>") < html.index("<strong>ENG-2</strong>")
    assert 'aria-sort="ascending"' in html
    assert "2025-03-01 – 2025-03-10 (UTC)" in html


def test_a_filter_request_still_gets_the_whole_report(client_as, fiona, data):
    # The form's Apply and the sort links target #report: it brings the date fields back.
    html = client_as(fiona).htmx("get", COST + "?range=7d", HTTP_HX_TARGET="report").content
    assert html.decode().lstrip().startswith('<div id="report">')
    assert b'hx-swap-oob="true"' in html and b'id="cost-by-outcome"' in html


def test_cost_per_issue_poll_shows_a_new_ledger_row(client_as, fiona, data):
    client = client_as(fiona)
    url = COST + "?range=7d"
    before = poll_html(client, url, "cost-figures")
    assert exact_total(before) == str(ledger_sum(org=data["s1"].org))
    run(data["s1"], at("2025-03-10 09:00"), at("2025-03-10 10:00"))
    after = poll_html(client, url, "cost-figures")
    assert exact_total(after) != exact_total(before)
    assert exact_total(after) == str(ledger_sum(org=data["s1"].org))
    assert stat(after, "Running hours") != stat(before, "Running hours")


def test_cost_per_issue_poll_shows_no_other_orgs_figures(client_as, fiona, charlie, data):
    a_html = poll_html(client_as(fiona), COST, "cost-figures")
    assert "OPS-7" not in a_html and "Org B secret work" not in a_html
    assert exact_total(a_html) == str(ledger_sum(org=data["s1"].org))
    # Org B asking with org A's pool gets its own figures, none of org A's.
    b_html = poll_html(client_as(charlie), COST + f"?pool={data['pool'].pk}", "cost-figures")
    assert "ENG-1" not in b_html and "Fix login" not in b_html
    assert exact_total(b_html) == str(ledger_sum(org=data["b_session"].org))


@pytest.mark.parametrize(
    "query",
    [
        "?range=custom&start=2025-13-45&end=2025-03-10",
        "?range=custom&start=2025-03-10&end=2025-03-01",
        "?range=next-year",
        "?pool=abc",
        "?sort=price&dir=sideways",
        "?page=xyz",
        "?page=99999",
        "?format=xlsx",
    ],
)
def test_cost_per_issue_poll_with_a_bad_query_gets_the_pages_fallback(
    client_as, fiona, data, query
):
    client = client_as(fiona)
    page = client.get(COST + query).content.decode()
    html = poll_html(client, COST + query, "cost-figures")
    # The figures the full page shows for the same query string: its defaults.
    assert exact_total(html) == exact_total(page)
    showing = re.search(r"Showing <strong>([^<]+)</strong>", page)
    assert showing and showing.group(0) in html


def test_cost_per_issue_poll_query_budget(client_as, fiona, org_a, data):
    client = client_as(fiona)
    client.get(COST)  # the session and content types, once
    full = page_queries(client, COST + "?range=7d")
    polled = poll_queries(client, COST + "?range=7d", "cost-figures")
    # 3 for the request, the ranking, the days, the labels, the closed months.
    assert len(polled) < len(full) and len(polled) <= 7, polled
    for i in range(30):
        run(make_session(org_a, issue=make_issue(org_a, f"MORE-{i}")), *_hour(i))
    assert len(poll_queries(client, COST + "?range=7d", "cost-figures")) == len(polled)


def _hour(i: int) -> tuple:  # type: ignore[type-arg]
    return at(f"2025-03-07 {i % 24:02d}:00"), at(f"2025-03-07 {i % 24:02d}:30")


def test_cost_by_outcome_refreshes_on_a_slow_interval_of_its_own(client_as, fiona, data):
    html = client_as(fiona).htmx("get", COST + "outcomes/?range=7d").content.decode()
    found = re.search(r'id="cost-by-outcome" hx-get="([^"]+)" hx-trigger="every (\d+)s"', html)
    assert found and unescape(found.group(1)) == COST + "outcomes/?range=7d"
    assert int(found.group(2)) == POLL_SECONDS["cost_by_outcome"] >= 60


def test_the_interval_can_be_shortened_for_tests(client_as, fiona, data, settings):
    settings.RENSEI_BILLING_POLL_SECONDS = 1
    assert polls_itself(client_as(fiona).get(COST).content.decode(), "cost-figures")[1] == 1


# --- the ledger ----------------------------------------------------------------------------


def _many_rows(session, n: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        run(
            session,
            at(f"2025-03-09 {12 + i // 60:02d}:{i % 60:02d}:00"),
            at(f"2025-03-09 {12 + i // 60:02d}:{i % 60:02d}:30"),
        )


def test_ledger_polls_its_results_keeping_filters_and_page(client_as, fiona, data):
    _many_rows(data["s1"], 60)
    client = client_as(fiona)
    url = LEDGER + "?range=7d&issue=ENG-1&page=2"
    asks, every = polls_itself(client.get(url).content.decode(), "results")
    assert asks == url and 10 <= every <= 30
    html = poll_html(client, url, "results")
    assert "Page 2 of 2" in html and "<form" not in html
    assert "ENG-2" not in html  # the issue filter holds
    rows_before = stat(html, "Rows")
    run(data["s1"], at("2025-03-10 09:00"), at("2025-03-10 09:10"))
    after = poll_html(client, url, "results")
    assert stat(after, "Rows") != rows_before
    assert re.search(r'data-total="([-0-9.]+)"', after).group(1) == str(  # type: ignore[union-attr]
        ledger_sum(issue=data["eng1"])
    )


def test_ledger_poll_shows_no_other_orgs_rows(client_as, fiona, charlie, data):
    a_html = poll_html(client_as(fiona), LEDGER, "results")
    assert "OPS-7" not in a_html
    b_html = poll_html(client_as(charlie), LEDGER + "?issue=ENG-1", "results")
    assert "No ledger rows match these filters." in b_html
    assert ">ENG-1<" not in b_html and "Fix login" not in b_html


@pytest.mark.parametrize("query", ["?session=abc", "?page=xyz", "?reversals=maybe", "?range=x"])
def test_ledger_poll_with_a_bad_query_gets_the_fallback(client_as, fiona, data, query):
    client = client_as(fiona)
    page = client.get(LEDGER + query).content.decode()
    html = poll_html(client, LEDGER + query, "results")
    assert stat(html, "Rows") == stat(page, "Rows")


def test_ledger_poll_query_budget(client_as, fiona, data):
    _many_rows(data["s1"], 60)
    client = client_as(fiona)
    client.get(LEDGER)
    for url in (LEDGER, LEDGER + "?page=2", LEDGER + "?issue=ENG-1&page=2"):
        full, polled = page_queries(client, url), poll_queries(client, url, "results")
        # 3 for the request, the issue's id, the totals, the page's ids, its rows.
        assert len(polled) < len(full) and len(polled) <= 7, polled


# --- an issue's cost -----------------------------------------------------------------------


def test_issue_page_polls_its_figures_keeping_both_pages(client_as, fiona, data):
    _many_rows(data["s1"], 60)
    client = client_as(fiona)
    url = "/analytics/issues/ENG-1/?page=2&sessions_page=1"
    asks, every = polls_itself(client.get(url).content.decode(), "issue-figures")
    assert asks == url and 10 <= every <= 30
    html = poll_html(client, url, "issue-figures")
    assert "Page 2 of 2" in html and "Sessions page" not in html  # one page of sessions
    before = stat(html, "Total cost, all time")
    run(data["s1"], at("2025-03-10 09:00"), at("2025-03-10 11:00"))
    after = poll_html(client, url, "issue-figures")
    assert stat(after, "Total cost, all time") != before
    assert stat(after, "Ledger rows") == "62"


def test_issue_poll_of_another_orgs_issue_is_404(client_as, charlie, data):
    assert poll(client_as(charlie), "/analytics/issues/ENG-1/", "issue-figures").status_code == 404


@pytest.mark.parametrize("query", ["?page=xyz", "?page=-1", "?sessions_page=abc&page=99"])
def test_issue_poll_with_a_bad_page_gets_the_fallback(client_as, fiona, data, query):
    html = poll_html(client_as(fiona), "/analytics/issues/ENG-1/" + query, "issue-figures")
    assert stat(html, "Ledger rows") == "1"


def test_issue_poll_query_budget(client_as, fiona, data):
    client = client_as(fiona)
    url = "/analytics/issues/ENG-1/"
    client.get(url)
    full, polled = page_queries(client, url), poll_queries(client, url, "issue-figures")
    # 3 for the request, the issue, its totals, the sessions (count, page, their sums) and
    # the ledger page (ids, rows).
    assert len(polled) < len(full) and len(polled) <= 10, polled
    _many_rows(data["s1"], 30)
    assert len(poll_queries(client, url, "issue-figures")) == len(polled)


# --- month close ---------------------------------------------------------------------------


def test_month_close_polls_its_tables_open_months_move_closed_ones_stay(
    client_as, alice, fiona, data
):
    client = client_as(alice)
    page = client.get(MONTHS).content.decode()
    asks, every = polls_itself(page, "month-figures")
    assert asks == MONTHS and 10 <= every <= 60
    run(data["s1"], at("2025-02-10 10:00"), at("2025-02-10 11:00"))
    close_month(data["s1"].org, date(2025, 2, 1), actor=fiona)
    before = poll_html(client, MONTHS, "month-figures")
    frozen = re.search(r'data-frozen="([-0-9.]+)"', before).group(1)  # type: ignore[union-attr]
    # The confirm actions are still there, as links to their own pages.
    reopen = 'id="reopen-2025-02" class="btn btn-sm btn-outline-danger" href="{}"'
    assert reopen.format("/billing/months/2025-02/reopen/") in before

    run(data["s1"], at("2025-03-10 09:00"), at("2025-03-10 10:00"))
    # Late February usage lands in March as an adjustment: February stays frozen.
    run(data["s1"], at("2025-02-20 09:00"), at("2025-02-20 10:00"))
    after = poll_html(client, MONTHS, "month-figures")
    assert _month_cell(after, "2025-03") != _month_cell(before, "2025-03")
    assert _month_cell(after, "2025-02") == _month_cell(before, "2025-02")
    assert re.search(r'data-frozen="([-0-9.]+)"', after).group(1) == frozen  # type: ignore[union-attr]

    # Reopening through its confirmation still works, and the next poll says so.
    assert client.post("/billing/months/2025-02/reopen/", {"reason": "credit"}).status_code == 302
    reopened = poll_html(client, MONTHS, "month-figures")
    assert "data-frozen" not in reopened and 'id="close-2025-02"' in reopened
    assert "credit" in reopened  # the history, in the same region


def _month_cell(html: str, month: str) -> str:
    row = re.search(rf'<tr data-month="{month}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {month}"
    return re.findall(r'<td class="text-end" title="([-0-9.]+) USD">', row.group(1))[0]


def test_month_poll_shows_no_other_orgs_months(client_as, fiona, charlie, data):
    close_month(data["b_session"].org, date(2025, 2, 1), actor=charlie)
    a_html = poll_html(client_as(fiona), MONTHS, "month-figures")
    assert "data-frozen" not in a_html and "No month has been closed yet." in a_html


def test_month_poll_query_budget(client_as, fiona, data):
    client = client_as(fiona)
    client.get(MONTHS)
    full, polled = page_queries(client, MONTHS), poll_queries(client, MONTHS, "month-figures")
    # 3 for the request, the first month, the months' totals, their closes, the history.
    assert len(polled) < len(full) and len(polled) <= 7, polled
