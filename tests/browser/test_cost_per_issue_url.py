"""Cost per Issue keeps its sort in the URL (a reload or a shared link shows the same order,
and Apply keeps it), and its date fields show ISO dates (YYYY-MM-DD), as every page does."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from billing.forms import today_utc
from tests.browser.conftest import login, mark_page, same_page, shot
from tests.browser.data import cost_history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def header(page: Any, name: str) -> Any:
    # The issues table (the Cost by outcome section has a Cost column too).
    table = page.get_by_role("table", name=re.compile(r"^Cost per issue"))
    return table.get_by_role("columnheader", name=re.compile(rf"^{re.escape(name)}"))


def test_sort_lives_in_the_url_and_dates_are_iso(live_server, page, fiona, org_a):  # type: ignore[no-untyped-def]
    cost_history(org_a)
    login(page, live_server.url, "fiona", "pw-fiona")
    page.goto(f"{live_server.url}/analytics/cost-per-issue/")
    expect(header(page, "Cost")).to_have_attribute("aria-sort", "descending")

    # Sorting by a header: the URL says so.
    mark_page(page)
    header(page, "Sessions").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"sort=sessions&dir=desc"))
    expect(header(page, "Sessions")).to_have_attribute("aria-sort", "descending")
    header(page, "Sessions").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"sort=sessions&dir=asc"))
    expect(header(page, "Sessions")).to_have_attribute("aria-sort", "ascending")
    assert same_page(page)

    # Applying another filter right away keeps the sort the header set.
    page.get_by_label("Date range (UTC)").select_option(label="Last 7 days")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"range=7d"))
    expect(page).to_have_url(re.compile(r"sort=sessions"))
    expect(page).to_have_url(re.compile(r"dir=asc"))
    expect(header(page, "Sessions")).to_have_attribute("aria-sort", "ascending")
    # The date fields follow the preset (the form is outside the swapped report).
    first_day = f"{today_utc() - timedelta(days=6):%Y-%m-%d}"
    expect(page.locator("#report")).to_contain_text(f"Last 7 days: {first_day} – ")
    expect(page.get_by_label("From (UTC)")).to_have_value(first_day)
    assert same_page(page)

    # A reload (or the link shared) shows the same order.
    page.reload()
    expect(header(page, "Sessions")).to_have_attribute("aria-sort", "ascending")
    expect(page.get_by_label("Date range (UTC)")).to_have_value("7d")

    # ISO dates in the date fields, whatever the browser's locale.
    for label in ("From (UTC)", "To (UTC, inclusive)"):
        field = page.get_by_label(label)
        expect(field).to_have_value(ISO)
        assert field.get_attribute("type") != "date"  # Chromium would show MM/DD/YYYY
        assert field.get_attribute("placeholder") == "YYYY-MM-DD"
    shot(page, "cost-per-issue-sorted")
