"""The ledger's pages (billing/ledger_pages.py): the rows and order ``Paginator`` gives over
the plain query, on every page and for every filter, in a bounded number of queries."""

from __future__ import annotations

import random
import re
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.paginator import Paginator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.ledger_pages import LedgerPaginator
from billing.models import CostEvent, RateCard
from tests.billing.helpers import at, make_issue, make_pool, make_session

NOW = at("2025-03-10 12:00")
LEDGER = "/billing/ledger/"
ROWS = 137
PER_PAGE = 10  # 14 pages: forward reads up to the middle, reads from the end past it
PAGES = [*map(str, range(1, 16)), "0", "-1", "999", "abc", "2.5", ""]


@pytest.fixture
def ledger(org_a, org_b):
    """At NOW, 137 rows in the default 30 days over 12 instants, so most rows tie on occurred_at,
    inserted in a shuffled order (ids do not follow time); 9 of them reversals, at their
    original's time. Beside them: an older row outside the range, and org B's rows."""
    with time_machine.travel(NOW, tick=False):  # the default 30 days end today
        card = RateCard.objects.get(provider="e2b")
        pools = [make_pool(org_a, "main"), make_pool(org_a, "spare")]
        issues = [make_issue(org_a, f"ENG-{i}") for i in range(3)]
        sessions = [make_session(org_a, issue=issues[i % 3], pool=pools[i % 2]) for i in range(5)]
        instants = [NOW - timedelta(days=i * 2, hours=i) for i in range(12)]
        rng = random.Random(7)

        def row(org, n: int, occurred, session=None, reverses=None) -> CostEvent:
            sign = -1 if reverses else 1
            return CostEvent(
                org=org,
                session=session,
                issue=session.issue if session else None,
                pool=session.pool if session else None,
                provider="e2b",
                quantity_seconds=Decimal(sign * (60 + n)),
                vcpu=2,
                memory_mb=512,
                rate_card=card,
                amount=Decimal("0.00003025") * sign * (60 + n),
                occurred_at=occurred,
                idempotency_key=f"page-{org.pk}-{n}",
                reverses=reverses,
            )

        originals = [
            row(org_a, n, rng.choice(instants), rng.choice([*sessions, None]))
            for n in range(ROWS - 9)
        ]
        rng.shuffle(originals)
        created = CostEvent.objects.bulk_create(originals)
        reversed_ = rng.sample(created, 9)
        CostEvent.objects.bulk_create(
            row(org_a, ROWS + i, r.occurred_at, r.session, reverses=r)
            for i, r in enumerate(reversed_)
        )
        CostEvent.objects.bulk_create(
            [
                row(org_a, 1000, NOW - timedelta(days=40), sessions[0]),
                row(org_b, 1001, instants[3]),
                row(org_b, 1002, instants[3]),
            ]
        )
        assert CostEvent.objects.filter(org=org_a).count() == ROWS + 1
        yield {"org": org_a, "issue": issues[1], "session": sessions[2], "pool": pools[1]}


def _plain(org, **filters):
    """The plain query: the default 30 days of the org's rows, the model's order."""
    start, end = NOW.replace(hour=0) - timedelta(days=29), NOW.replace(hour=0) + timedelta(days=1)
    return CostEvent.objects.filter(org=org, occurred_at__gt=start, occurred_at__lte=end, **filters)


def _shown(html: str) -> tuple[list[str], str]:
    keys = re.findall(r'<code class="small">([^<]+)</code>', html)
    found = re.search(r"Page [\d,]+ of [\d,]+", html)
    return keys, found.group(0) if found else "Page 1 of 1"


def _expected(rows, page: str) -> tuple[list[str], str]:
    p = Paginator(rows, PER_PAGE).get_page(page)
    return [r.idempotency_key for r in p], f"Page {p.number} of {p.paginator.num_pages}"


# Each filter of the ledger page, as the query string and as the plain query's filters.
FILTERS = {
    "none": lambda d: ("", {}),
    "issue": lambda d: ("issue=ENG-1", {"issue__key": "ENG-1"}),
    "session": lambda d: (f"session={d['session'].pk}", {"session": d["session"]}),
    "pool": lambda d: (f"pool={d['pool'].pk}", {"pool": d["pool"]}),
    "reversals only": lambda d: ("reversals=only", {"reverses__isnull": False}),
    "reversals excluded": lambda d: ("reversals=exclude", {"reverses__isnull": True}),
}


@pytest.mark.parametrize("name", FILTERS)
def test_every_page_shows_what_the_plain_paginator_shows(
    client_as, fiona, ledger, monkeypatch, name
):
    monkeypatch.setattr("billing.views.PAGE_SIZE", PER_PAGE)
    query, filters = FILTERS[name](ledger)
    rows = _plain(ledger["org"], **filters)
    assert rows.count() > (0 if name in ("session", "reversals only") else 2 * PER_PAGE)
    client = client_as(fiona)
    for page in PAGES:
        html = client.get(f"{LEDGER}?{query}&page={page}").content.decode()
        assert _shown(html) == _expected(rows, page), (query, page)


def test_an_issues_cost_page_pages_its_rows_likewise(client_as, fiona, ledger, monkeypatch):
    monkeypatch.setattr("billing.views.PAGE_SIZE", PER_PAGE)
    # All time, the older row too.
    rows = CostEvent.objects.filter(org=ledger["org"], issue=ledger["issue"])
    client = client_as(fiona)
    for page in PAGES:
        html = client.get(f"/analytics/issues/ENG-1/?page={page}").content.decode()
        assert _shown(html) == _expected(rows, page), page


@pytest.mark.parametrize("per_page", [1, 7, 50, 200])
def test_the_paginator_matches_django_s_for_any_page_size(ledger, per_page):
    rows = _plain(ledger["org"]).select_related("session", "issue", "reverses", "reversed_by")
    count = rows.count()
    plain = Paginator(rows, per_page)
    ours = LedgerPaginator(rows, per_page, count)
    assert ours.num_pages == plain.num_pages
    for number in [*range(0, plain.num_pages + 2), None, "x"]:
        want, got = plain.get_page(number), ours.get_page(number)
        assert (got.number, list(got)) == (want.number, list(want)), number
        assert got.start_index() == want.start_index() and got.has_next() == want.has_next()


def test_an_empty_list_has_one_empty_page_and_reads_nothing(org_a):
    with CaptureQueriesContext(connection) as ctx:
        page = LedgerPaginator(CostEvent.objects.filter(org=org_a), 50, 0).get_page("3")
    assert (page.number, list(page), page.paginator.num_pages) == (1, [], 1)
    assert ctx.captured_queries == []


def test_a_page_costs_the_same_queries_first_middle_and_last(client_as, fiona, ledger):
    client = client_as(fiona)
    client.get(LEDGER)  # warm up the session and content types

    def queries(page: str) -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"{LEDGER}?page={page}").status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    # 137 rows: 3 pages of 50; page 2 is read from the end, page 3 is the last.
    counts = {page: len(queries(page)) for page in ["1", "2", "3", "99", "abc"]}
    assert len(set(counts.values())) == 1, counts
    assert counts["1"] <= 8
    # The page's ids without the rows' joins, then only those rows with them.
    for page in ["1", "3"]:
        ledger_reads = [q for q in queries(page) if 'FROM "billing_costevent"' in q]
        ids = [q for q in ledger_reads if "LIMIT" in q]
        assert len(ids) == 1 and "JOIN" not in ids[0]
        rows = [q for q in ledger_reads if '"billing_costevent"."id" IN (' in q]
        assert len(rows) == 1 and "JOIN" in rows[0]


@pytest.mark.parametrize("key", ["ENG-404", "OPS-1"])
def test_an_issue_key_the_org_does_not_have_shows_no_rows(client_as, fiona, ledger, org_b, key):
    make_issue(org_b, "OPS-1")  # another org's issue: its key finds nothing here
    html = client_as(fiona).get(f"{LEDGER}?issue={key}").content.decode()
    assert _shown(html) == ([], "Page 1 of 1")
    assert re.search(r"Rows</div>\s*<div[^>]*>0<", html), "the totals count no rows"


def test_the_issue_filter_reads_the_ledger_by_issue_id(client_as, fiona, ledger):
    client = client_as(fiona)
    with CaptureQueriesContext(connection) as ctx:
        html = client.get(f"{LEDGER}?issue=ENG-1").content.decode()
    ledger_reads = [
        q["sql"] for q in ctx.captured_queries if 'FROM "billing_costevent"' in q["sql"]
    ]
    ids = [q for q in ledger_reads if "LIMIT" in q]
    assert len(ids) == 1 and "JOIN" not in ids[0] and f'"issue_id" = {ledger["issue"].pk}' in ids[0]
    assert _shown(html)[0], "the issue's rows are shown"


def test_the_pool_filter_has_an_index_in_the_pages_order(client_as, fiona, ledger):
    """Filtered by pool, the page's ids come from (pool, org, occurred_at, id): its equality
    columns, then the page's order. It also serves the foreign key, whose own index is gone."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, CostEvent._meta.db_table)
    indexes = {name: c["columns"] for name, c in found.items() if c["index"]}
    assert indexes["cost_pool_org_occurred_id_idx"] == ["pool_id", "org_id", "occurred_at", "id"]
    assert ["pool_id"] not in indexes.values()
    row = CostEvent.objects.filter(org=ledger["org"]).exclude(pool=None).first()
    assert row is not None and row.pool is not None
    pool = row.pool
    with CaptureQueriesContext(connection) as ctx:
        html = client_as(fiona).get(f"{LEDGER}?pool={pool.pk}&page=2").content.decode()
    ids = [q["sql"] for q in ctx.captured_queries if 'FROM "billing_costevent"' in q["sql"]]
    ids = [q for q in ids if "LIMIT" in q]
    assert len(ids) == 1 and "JOIN" not in ids[0] and f'"pool_id" = {pool.pk}' in ids[0]
    assert _shown(html)[0], "the pool's rows are shown"
