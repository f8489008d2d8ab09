"""The ledger page, an issue's cost page, and who may see them."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import time_machine

from billing.ledger import reverse_cost_event
from billing.models import CostEvent
from tests.billing.helpers import at, ledger_sum, make_issue, make_pool, make_session, run

NOW = at("2025-03-10 12:00")
LEDGER = "/billing/ledger/"


@pytest.fixture
def data(org_a, org_b, alice):
    with time_machine.travel(NOW, tick=False):
        pool = make_pool(org_a, "main")
        eng1, eng2 = make_issue(org_a, "ENG-1", "Fix login"), make_issue(org_a, "ENG-2")
        s1 = make_session(org_a, issue=eng1, pool=pool)
        s2 = make_session(org_a, issue=eng2)
        r1 = run(s1, at("2025-03-09 10:00"), at("2025-03-09 11:00"))
        r2 = run(s1, at("2025-03-09 12:00"), at("2025-03-09 12:00:01.5"))
        r3 = run(s2, at("2025-03-08 10:00"), at("2025-03-09 00:00"))
        reversal = reverse_cost_event(r3, reason="credit for outage", actor=alice)
        b_issue = make_issue(org_b, "OPS-7", "Org B secret work")
        b_row = run(
            make_session(org_b, issue=b_issue), at("2025-03-09 01:00"), at("2025-03-09 02:00")
        )
    return locals()


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _total(html: str) -> str:
    found = re.search(r'data-total="([-0-9.]+)"', html)
    assert found, "no total on the page"
    return found.group(1)


def test_ledger_lists_rows_with_details_and_totals(client_as, fiona, data, clock):
    html = client_as(fiona).get(LEDGER).content.decode()
    r1, r2 = data["r1"], data["r2"]
    assert r1.idempotency_key in html and data["reversal"].idempotency_key in html
    assert "2025-03-09 11:00:00" in html  # occurred at, UTC
    assert "1.500" in html  # seconds, exact
    # 1.5 s costs under a cent: two significant digits on screen, the stored figure on hover.
    assert f'title="{r2.amount:f} USD">$0.000045</td>' in html
    assert "$0.000014/vCPU-s · $0.0000045/GiB-s" in html  # the rate used
    assert "Reversal of #" in html and "Reversed by #" in html and "credit for outage" in html
    assert "OPS-7" not in html and data["b_row"].idempotency_key not in html
    assert _total(html) == f"{ledger_sum(org=data['pool'].org):f}"
    assert 'Rows</div><div class="value">4<' in html


@pytest.mark.parametrize(
    "query, expected",
    [
        ("?issue=ENG-1", {"r1", "r2"}),
        ("?reversals=only", {"reversal"}),
        ("?reversals=exclude", {"r1", "r2", "r3"}),
        ("?range=today", set()),
        ("?range=custom&start=2025-03-08&end=2025-03-08", {"r3", "reversal"}),  # ended at 00:00
    ],
)
def test_ledger_filters(client_as, fiona, data, clock, query, expected):
    html = client_as(fiona).get(LEDGER + query).content.decode()
    shown = {name for name in ("r1", "r2", "r3", "reversal") if data[name].idempotency_key in html}
    assert shown == expected
    rows = CostEvent.objects.filter(pk__in=[data[n].pk for n in expected])
    assert _total(html) == f"{ledger_sum(pk__in=rows.values('pk')):f}"


def test_ledger_session_and_pool_filters(client_as, fiona, data, clock):
    client = client_as(fiona)
    html = client.get(LEDGER + f"?session={data['s2'].pk}").content.decode()
    assert data["r3"].idempotency_key in html and data["r1"].idempotency_key not in html
    html = client.get(LEDGER + f"?pool={data['pool'].pk}").content.decode()
    assert data["r1"].idempotency_key in html and data["r3"].idempotency_key not in html
    # Org B's session id filters to nothing, never to org B's rows.
    html = client.get(LEDGER + f"?session={data['b_row'].session_id}").content.decode()
    assert data["b_row"].idempotency_key not in html and "No ledger rows match" in html


@pytest.mark.parametrize(
    "query", ["?session=abc", "?session=-4", "?range=custom&start=x", "?pool=zz"]
)
def test_ledger_bad_filters_get_a_message(client_as, fiona, data, clock, query):
    resp = client_as(fiona).get(LEDGER + query)
    assert resp.status_code == 200
    assert "Some filters were not understood" in resp.content.decode()


def test_ledger_paginates_by_fifty(client_as, fiona, org_a, clock):
    session = make_session(org_a)
    for i in range(55):
        run(
            session,
            at("2025-03-09 00:00:00") + (i * (at("2025-03-09 00:10") - at("2025-03-09 00:00"))),
            at("2025-03-09 00:01") + (i * (at("2025-03-09 00:10") - at("2025-03-09 00:00"))),
        )
    client = client_as(fiona)
    first = client.get(LEDGER).content.decode()
    assert "Page 1 of 2" in first and first.count('<code class="small">sandbox-seconds') == 50
    second = client.get(LEDGER + "?page=2").content.decode()
    assert second.count('<code class="small">sandbox-seconds') == 5
    assert _total(first) == _total(second) == f"{ledger_sum():f}"


def test_ledger_htmx_partial(client_as, fiona, data, clock):
    html = client_as(fiona).htmx("get", LEDGER + "?issue=ENG-1").content.decode()
    assert html.lstrip().startswith('<div id="results"') and "<html" not in html


def test_issue_page_shows_sessions_and_rows(client_as, fiona, data, clock):
    resp = client_as(fiona).get("/analytics/issues/ENG-1/")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "Fix login" in html
    assert f"#{data['s1'].pk}" in html
    assert data["r1"].idempotency_key in html and data["r3"].idempotency_key not in html
    total = ledger_sum(issue=data["eng1"])
    assert f'title="{total:f} USD"' in html
    # Its sessions, each with its own cost; a session never billed shows zero.
    idle = make_session(data["org_a"], issue=data["eng1"])
    html = client_as(fiona).get("/analytics/issues/ENG-1/").content.decode()
    table = html.split(">Sessions</h2>", 1)[1].split("</table>", 1)[0]
    found = re.finditer(r'>#(\d+)</a>.*?title="([-0-9.]+) USD"', table, re.S)
    rows = {m.group(1): m.group(2) for m in found}
    assert rows[str(data["s1"].pk)] == f"{ledger_sum(session=data['s1']):f}"
    assert Decimal(rows[str(idle.pk)]) == 0


def test_issue_keys_with_odd_characters(client_as, fiona, org_a, clock):
    issue = make_issue(org_a, "team/ENG 5?x", "Slashes")
    run(make_session(org_a, issue=issue), at("2025-03-09 10:00"), at("2025-03-09 10:05"))
    html = client_as(fiona).get("/analytics/cost-per-issue/").content.decode()
    found = re.search(r'href="(/analytics/issues/[^"]+)"><strong>team/ENG 5\?x', html)
    assert found, "no link to the issue"
    link = found.group(1)
    assert client_as(fiona).get(link).status_code == 200


def test_another_orgs_issue_is_404(client_as, fiona, charlie, data, clock):
    assert client_as(fiona).get("/analytics/issues/OPS-7/").status_code == 404
    assert client_as(charlie).get("/analytics/issues/ENG-1/").status_code == 404
    assert client_as(charlie).get("/analytics/issues/OPS-7/").status_code == 200
    assert client_as(fiona).get("/analytics/issues/NOPE-1/").status_code == 404


@pytest.mark.parametrize("url", ["/analytics/cost-per-issue/", LEDGER, "/analytics/issues/ENG-1/"])
def test_finance_and_admins_see_billing_members_do_not(client_as, alice, bob, fiona, data, url):
    assert client_as(fiona).get(url).status_code == 200
    assert client_as(alice).get(url).status_code == 200
    assert client_as(bob).get(url).status_code == 403


def test_finance_cannot_open_settings(client_as, fiona):
    assert client_as(fiona).get("/settings/integrations/").status_code == 403
    assert client_as(fiona).get("/settings/api-tokens/").status_code == 403


def test_navigation_links_for_finance(client_as, fiona, bob):
    html = client_as(fiona).get("/billing/ledger/").content.decode()
    assert 'href="/analytics/cost-per-issue/"' in html and 'href="/billing/ledger/"' in html
    assert 'href="/settings/integrations/"' not in html
