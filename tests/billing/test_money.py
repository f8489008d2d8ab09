"""Money on screen: one rule (billing.money) on every page, the admin and the charts.

A short session costs a fraction of a cent; it must never read $0.00. The CSV keeps the
stored figure.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model

from billing.ledger import reverse_cost_event
from billing.money import format_money, format_usd
from tests.billing.helpers import at, expected_amount, make_issue, make_pool, make_session, run

NOW = at("2025-03-10 12:00")


@pytest.mark.parametrize(
    "value, shown",
    [
        (Decimal(0), "$0.00"),
        (Decimal("-0"), "$0.00"),  # never "-$0.00"
        (Decimal("0.0022"), "$0.0022"),
        (Decimal("0.004999"), "$0.0050"),
        (Decimal("0.00999"), "$0.01"),  # rounds up to the cent: reads as the cent
        (Decimal("0.01"), "$0.01"),
        (Decimal("0.014999"), "$0.01"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("1234567.891"), "$1,234,567.89"),
        (Decimal("-0.0022"), "-$0.0022"),  # a reversal of a sub-cent row
        (Decimal("-12.345"), "-$12.35"),
        (Decimal("0.000000000001"), "$0.0000000000010"),  # the ledger's smallest step
        (Decimal("0.002200000000"), "$0.0022"),  # as stored: 12 places
        (None, ""),
        ("", ""),
        ("not a number", ""),
        ("0.0022", "$0.0022"),
    ],
)
def test_the_rule(value, shown):
    assert format_usd(value) == shown
    assert format_money(value, "USD") == shown


def test_another_currency_is_written_after_the_figure():
    assert format_money(Decimal("0.0022"), "EUR") == "0.0022 EUR"
    assert format_money(Decimal("-5"), "EUR") == "-5.00 EUR"


@pytest.fixture
def short_run(org_a):
    """A 67-second session on 2 vCPU / 512 MiB: about a fifth of a cent."""
    with time_machine.travel(NOW, tick=False):
        issue = make_issue(org_a, "ENG-1", "Fix login")
        session = make_session(org_a, issue=issue, pool=make_pool(org_a, "main"))
        row = run(session, at("2025-03-10 10:00"), at("2025-03-10 10:01:07"))
    assert row.amount == expected_amount(67, 2, 512) == Decimal("0.002026750000")
    return row


SHOWN = "$0.0020"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def test_ledger_page_shows_a_sub_cent_row_and_total(client_as, fiona, short_run, clock):
    html = client_as(fiona).get("/billing/ledger/").content.decode()
    assert f'title="{short_run.amount:f} USD">{SHOWN}</td>' in html  # the row
    assert f">{SHOWN}</div>" in html  # the total for these filters
    assert ">$0.00<" not in html


def test_issue_page_shows_a_sub_cent_cost(client_as, fiona, short_run, clock):
    html = client_as(fiona).get("/analytics/issues/ENG-1/").content.decode()
    assert f">{SHOWN}<" in html and ">$0.00<" not in html


def test_cost_per_issue_page_and_charts_show_a_sub_cent_cost(client_as, fiona, short_run, clock):
    html = client_as(fiona).get("/analytics/cost-per-issue/?range=today").content.decode()
    assert f">{SHOWN}</td>" in html  # the issue's row
    assert f"<title>ENG-1: {SHOWN}</title>" in html  # the top-issues bar's tooltip
    assert f"ENG-1: {SHOWN}</desc>" in html  # the chart's description
    assert f"total {SHOWN}." in html  # the daily chart's description
    assert ">$0.00<" not in html.split("<svg", 1)[0]  # nothing above the charts reads zero


def test_cost_per_issue_csv_keeps_the_stored_figure(client_as, fiona, short_run, clock):
    resp = client_as(fiona).get("/analytics/cost-per-issue/?range=today&format=csv")
    rows = list(csv.DictReader(io.StringIO(resp.content.decode())))
    assert [r["amount"] for r in rows if r["issue_key"] == "ENG-1"] == ["0.002026750000"]


def test_session_page_shows_a_sub_cent_cost(client_as, alice, short_run, clock):
    html = client_as(alice).get(f"/sessions/{short_run.session_id}/").content.decode()
    assert f'title="{short_run.amount:f} USD">{SHOWN}</div>' in html  # billed
    assert f'title="{short_run.amount:f} USD">{SHOWN}</td>' in html  # the ledger row


def test_dashboard_shows_a_sub_cent_day(client_as, alice, short_run, clock):
    html = client_as(alice).get("/").content.decode()
    assert f">{SHOWN}</div>" in html  # today and this month
    assert f">{SHOWN}</span></li>" in html  # the top issue


def test_admin_changelist_shows_sub_cent_amounts_and_reversals(org_a, alice, short_run, client_as):
    reverse_cost_event(short_run, reason="test credit", actor=alice)
    staff = get_user_model().objects.create_superuser("sam", "sam@example.com", "pw-sam")
    html = client_as(staff).get("/admin/billing/costevent/").content.decode()
    assert f'<span title="{short_run.amount:f} USD">{SHOWN}</span>' in html
    assert f'<span title="-{short_run.amount:f} USD">-{SHOWN}</span>' in html
