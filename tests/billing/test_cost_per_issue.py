"""Cost per Issue: the numbers, the filters, the CSV, the charts, and who sees what."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.analytics import CostFilter, cost_per_issue, ledger_rows
from billing.exports import COLUMNS
from billing.ledger import reverse_cost_event
from billing.models import CostEvent
from billing.periods import period_for
from sessions.intervals import open_interval
from tests.billing.helpers import at, finish, ledger_sum, make_issue, make_pool, make_session, run

NOW = at("2025-03-10 12:00")
URL = "/analytics/cost-per-issue/"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def data(org_a, org_b, clock):
    """Org A: three issues over two pools plus unattributed work; org B: its own issue."""
    main, gpu = make_pool(org_a, "main"), make_pool(org_a, "big")
    eng1 = make_issue(org_a, "ENG-1", "Fix login")
    eng2 = make_issue(org_a, "ENG-2", "Speed up build")
    eng10 = make_issue(org_a, "ENG-10", '=HYPERLINK("x")')
    s1 = make_session(org_a, issue=eng1, pool=main, vcpu=2, memory_mb=512)
    run(s1, at("2025-03-09 10:00"), at("2025-03-09 11:00"))
    run(s1, at("2025-03-09 13:00"), at("2025-03-09 14:00"), reason="terminate")
    finish(s1, at("2025-03-09 14:00"))
    s2 = make_session(org_a, issue=eng2, pool=gpu, vcpu=8, memory_mb=8192)
    run(s2, at("2025-03-08 00:00"), at("2025-03-09 00:00"), reason="daily-accrual")
    s3 = make_session(org_a, issue=eng10, pool=main, vcpu=1, memory_mb=1024)
    run(s3, at("2025-01-15 10:00"), at("2025-01-15 12:00"))  # outside the last 30 days
    finish(s3, at("2025-01-15 12:00"))
    loose = make_session(org_a, pool=main, vcpu=1, memory_mb=512)
    run(loose, at("2025-03-10 09:00"), at("2025-03-10 09:30"))
    b_issue = make_issue(org_b, "OPS-7", "Org B secret work")
    b_pool = make_pool(org_b, "b-pool")
    b_session = make_session(org_b, issue=b_issue, pool=b_pool, vcpu=16, memory_mb=16384)
    run(b_session, at("2025-03-09 01:00"), at("2025-03-09 05:00"))
    return {
        "main": main,
        "gpu": gpu,
        "eng1": eng1,
        "eng2": eng2,
        "eng10": eng10,
        "s1": s1,
        "s2": s2,
        "loose": loose,
        "b_pool": b_pool,
    }


def _csv(response):
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def _page_total(response) -> Decimal:
    totals = re.findall(r'data-total="([-0-9.]+)"', response.content.decode())
    assert totals, "no totals row on the page"
    return Decimal(totals[-1])


def test_page_shows_issues_unattributed_and_a_total_equal_to_the_ledger(client_as, fiona, data):
    resp = client_as(fiona).get(URL)
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "Last 30 days: 2025-02-09 – 2025-03-10 (UTC)" in html
    assert "ENG-1" in html and "Fix login" in html and "ENG-2" in html
    assert "ENG-10" not in html  # its only cost is in January
    assert "Unattributed" in html
    ledger = ledger_sum(org=data["main"].org, occurred_at__gt=at("2025-02-09 00:00"))
    assert _page_total(resp) == ledger
    assert ledger == ledger_sum(org=data["main"].org) - ledger_sum(session__issue=data["eng10"])
    # Money to the cent on screen, the exact figure in the title.
    eng2_cost = ledger_sum(issue=data["eng2"])
    assert f"${eng2_cost.quantize(Decimal('0.01')):,}" in html
    assert f'title="{eng2_cost:f} USD"' in html
    assert "OPS-7" not in html and "Org B secret work" not in html


def test_report_total_equals_ledger_sum_for_every_filter(data):
    org = data["main"].org
    today = NOW.date()
    for preset in ("today", "7d", "30d", "this-month", "last-month"):
        for pool in (None, data["main"].pk, data["gpu"].pk):
            for provider in (None, "e2b"):
                f = CostFilter(org.pk, period_for(preset, today), pool, provider)
                report = cost_per_issue(f)
                assert report.totals.amount == ledger_rows(f).total_amount(), (preset, pool)
    assert cost_per_issue(CostFilter(org.pk, period_for("today", today))).totals.amount == (
        ledger_sum(session=data["loose"])
    )


def test_reversals_show_as_net(data, alice):
    org = data["main"].org
    row = CostEvent.objects.filter(session=data["s2"]).get()
    reverse_cost_event(row, reason="outage credit", actor=alice)
    f = CostFilter(org.pk, period_for("30d", NOW.date()))
    report = cost_per_issue(f)
    eng2 = next(r for r in report.rows if r.key == "ENG-2")
    assert eng2.amount == 0 and eng2.running_seconds == 0
    assert report.totals.amount == ledger_rows(f).total_amount()


def test_running_and_paused_hours(client_as, fiona, data):
    org = data["main"].org
    report = cost_per_issue(CostFilter(org.pk, period_for("30d", NOW.date())))
    eng1 = next(r for r in report.rows if r.key == "ENG-1")
    # Alive 10:00 → 14:00, ran 10–11 and 13–14: two running hours, two paused hours.
    assert eng1.sessions == 1
    assert eng1.running_seconds == Decimal(7200)
    assert eng1.paused_seconds == Decimal(7200)
    assert eng1.vcpu_seconds == Decimal(14400)
    html = client_as(fiona).get(URL + "?sort=issue").content.decode()
    assert re.search(
        r"ENG-1</strong></a>.*?<td[^>]*>1</td>\s*<td[^>]*>2.00</td>\s*<td[^>]*>2.00</td>\s*<td[^>]*>4.00</td>",
        html,
        re.S,
    )


def test_a_running_sandbox_is_not_counted_as_paused(org_a, clock):
    issue = make_issue(org_a, "ENG-5")
    session = make_session(org_a, issue=issue)
    run(session, at("2025-03-10 08:00"), at("2025-03-10 09:00"))
    open_interval(session, at=at("2025-03-10 10:00"))  # paused 9–10, running since 10
    report = cost_per_issue(CostFilter(org_a.pk, period_for("today", NOW.date())))
    (row,) = report.rows
    assert row.running_seconds == Decimal(3600)  # billed so far
    assert row.paused_seconds == Decimal(3600)  # 4 h alive − 1 h billed − 2 h open


def test_csv_has_the_page_numbers_and_documented_columns(client_as, fiona, data):
    client = client_as(fiona)
    query = "?range=custom&start=2025-03-01&end=2025-03-10&pool=" + str(data["main"].pk)
    rows = _csv(client.get(URL + query + "&format=csv"))
    page = client.get(URL + query)
    assert list(rows[0].keys()) == [name for name, _ in COLUMNS]
    by_key = {r["issue_key"]: r for r in rows}
    assert set(by_key) == {"ENG-1", ""}  # ENG-2 ran in the other pool
    assert by_key[""]["issue_title"] == "Unattributed"
    assert by_key["ENG-1"]["running_seconds"] == "7200.000"
    assert by_key["ENG-1"]["range_start"] == "2025-03-01T00:00:00Z"
    assert by_key["ENG-1"]["range_end"] == "2025-03-11T00:00:00Z"
    total = sum(Decimal(r["amount"]) for r in rows)
    assert total == _page_total(page)
    assert total == ledger_sum(pool=data["main"], occurred_at__gt=at("2025-03-01 00:00"))
    assert Decimal(by_key["ENG-1"]["amount"]) == ledger_sum(issue=data["eng1"])
    # Amounts are unrounded in the CSV.
    assert len(by_key["ENG-1"]["amount"].split(".")[1]) == 12
    # Every CSV row's figures are on the page (exact amount in the title, hours shown).
    html = page.content.decode()
    for r in rows:
        assert f'title="{r["amount"]} USD"' in html
        hours = (Decimal(r["running_seconds"]) / 3600).quantize(Decimal("0.01"))
        assert f">{hours:,}</td>" in html


def test_csv_neutralises_formulas_in_titles(client_as, fiona, data):
    rows = _csv(
        client_as(fiona).get(URL + "?range=custom&start=2025-01-01&end=2025-03-10&format=csv")
    )
    eng10 = next(r for r in rows if r["issue_key"] == "ENG-10")
    assert eng10["issue_title"].startswith("'=")


def test_sorting(client_as, fiona, data):
    client = client_as(fiona)
    keys = lambda resp: re.findall(r"<strong>(ENG-\d+)</strong>", resp.content.decode())  # noqa: E731
    assert keys(
        client.get(URL + "?range=custom&start=2025-01-01&end=2025-03-10&sort=issue&dir=asc")
    ) == [
        "ENG-1",
        "ENG-2",
        "ENG-10",
    ]
    by_cost = keys(
        client.get(URL + "?range=custom&start=2025-01-01&end=2025-03-10&sort=cost&dir=desc")
    )
    assert by_cost[0] == "ENG-2"
    by_cost_asc = keys(
        client.get(URL + "?range=custom&start=2025-01-01&end=2025-03-10&sort=cost&dir=asc")
    )
    assert by_cost_asc == list(reversed(by_cost))


@pytest.mark.parametrize(
    "query, message",
    [
        ("?range=custom&start=2025-13-45&end=2025-03-10", "write the date as YYYY-MM-DD"),
        ("?range=custom&start=2025-03-10&end=2025-03-01", "the end date is before the start date"),
        ("?range=custom", "custom dates need both a start and an end date"),
        ("?range=next-year", "Select a valid choice"),
        ("?pool=abc", "not one of this organisation"),
        ("?pool=99999999999999999999999", "not one of this organisation"),
        ("?provider=aws", "Select a valid choice"),
        ("?sort=price&dir=sideways", "Select a valid choice"),
        ("?range=custom&start=0001-01-01&end=9999-12-31", "at most"),
    ],
)
def test_bad_query_strings_get_a_message_and_defaults(client_as, fiona, data, query, message):
    client = client_as(fiona)
    resp = client.get(URL + query)
    assert resp.status_code == 200
    html = resp.content.decode()
    assert message in html
    assert "Showing the default instead" in html
    csv_resp = client.get(URL + query + "&format=csv")
    assert csv_resp.status_code == 400
    assert message in csv_resp.content.decode()


def test_another_orgs_pool_id_shows_no_foreign_data(client_as, charlie, fiona, data):
    # Charlie (org B) asks for org A's pool: a message, and only org B's own numbers.
    client = client_as(charlie)
    resp = client.get(URL + f"?pool={data['main'].pk}")
    html = resp.content.decode()
    assert resp.status_code == 200
    assert "not one of this organisation" in html
    assert "<strong>ENG-1</strong>" not in html and "Fix login" not in html
    assert "<strong>OPS-7</strong>" in html
    assert client.get(URL + f"?pool={data['main'].pk}&format=csv").status_code == 400
    rows = _csv(client.get(URL + "?format=csv"))
    assert [r["issue_key"] for r in rows] == ["OPS-7"]
    assert not {"ENG-1", "ENG-2", "ENG-10"} & {r["issue_key"] for r in rows}
    # And Fiona asking for org B's pool sees none of org B's.
    a_html = client_as(fiona).get(URL + f"?pool={data['b_pool'].pk}").content.decode()
    assert "OPS-7" not in a_html


def test_charts_are_inline_accessible_svg(client_as, fiona, data):
    html = client_as(fiona).get(URL).content.decode()
    # The top-issues bars link to each issue, so that chart is a group (an image hides links).
    assert html.count('<svg class="chart" role="group"') == 1
    assert html.count('<svg class="chart" role="img"') == 1
    assert '<title id="chart-' in html and "Top 2 issues by cost" in html
    assert "Cost per day (UTC)" in html
    assert "<title>2025-03-09: $" in html  # a daily column's own title
    assert '<script src="http' not in html


def test_htmx_gets_the_report_partial(client_as, fiona, data):
    resp = client_as(fiona).htmx("get", URL + "?range=7d")
    html = resp.content.decode()
    assert resp.status_code == 200
    assert html.lstrip().startswith('<div id="report">')
    assert "<html" not in html


def test_empty_state(client_as, fiona, clock):
    html = client_as(fiona).get(URL).content.decode()
    assert "No cost in this range." in html


def test_pagination_keeps_filters(client_as, fiona, org_a, clock):
    session = make_session(org_a)
    for i in range(60):
        issue = make_issue(org_a, f"BIG-{i}")
        CostEvent.objects.bulk_create([_row(org_a, issue, session, i)])
    client = client_as(fiona)
    first = client.get(URL + "?range=7d&sort=issue&dir=asc").content.decode()
    assert "Page 1 of 2 (60 issues)" in first
    assert "<strong>BIG-49</strong>" in first and "<strong>BIG-50</strong>" not in first
    assert "?range=7d&amp;sort=issue&amp;dir=asc&amp;page=2" in first
    second = client.get(URL + "?range=7d&sort=issue&dir=asc&page=2").content.decode()
    assert "BIG-50" in second and "BIG-59" in second
    assert client.get(URL + "?page=xyz").status_code == 200


def _row(org, issue, session, i, pool=None):
    from billing.models import RateCard

    card = RateCard.objects.order_by("effective_from").first()
    return CostEvent(
        org=org,
        issue=issue,
        session=session,
        pool=pool,
        provider="e2b",
        quantity_seconds=Decimal(60 + i),
        vcpu=2,
        memory_mb=512,
        rate_card=card,
        amount=Decimal("0.00003025") * (60 + i),
        occurred_at=at("2025-03-09 10:00"),
        idempotency_key=f"bulk-{org.pk}-{issue.pk}-{i}",
    )


def _issues_with_cost(org, n):
    from sessions.models import Issue

    pool = make_pool(org, f"pool-{n}")
    issues = Issue.objects.bulk_create(
        Issue(org=org, key=f"Q{n}-{i}", title=f"Issue {i}") for i in range(n)
    )
    session = make_session(org, pool=pool, started_at=at("2025-03-09 09:00"))
    CostEvent.objects.bulk_create(
        _row(org, issue, session, i, pool) for i, issue in enumerate(issues)
    )


def test_query_count_does_not_grow_with_issues(client_as, fiona, org_a, clock):
    client = client_as(fiona)
    client.get(URL)  # warm up the session and content types

    def count(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    _issues_with_cost(org_a, 10)
    small = [count(URL), count(URL + "?format=csv"), count("/billing/ledger/")]
    _issues_with_cost(org_a, 1000)
    large = [count(URL), count(URL + "?format=csv"), count("/billing/ledger/")]
    assert small == large
    html = client.get(URL + "?sort=issue").content.decode()
    assert "(1,010 issues)" in html
