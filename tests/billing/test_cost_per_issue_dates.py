"""Cost per Issue: ISO dates in its date fields, one full stop per message, the sort carried
by the next Apply, and an end date whose meaning the page, the CSV and docs/ all state."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.conf import settings

from billing.exports import COLUMNS
from tests.billing.helpers import at, make_issue, make_pool, make_session, run

pytestmark = pytest.mark.django_db
URL = "/analytics/cost-per-issue/"
LEDGER = "/billing/ledger/"


@pytest.fixture
def march(org_a):  # type: ignore[no-untyped-def]
    session = make_session(org_a, issue=make_issue(org_a, "ENG-1", "t"), pool=make_pool(org_a))
    run(session, at("2025-03-31 22:00"), at("2025-04-01 00:00"), reason="daily-accrual")


def test_date_fields_are_iso_text_fields(client_as, fiona) -> None:  # type: ignore[no-untyped-def]
    for url in (URL, LEDGER):
        html = client_as(fiona).get(url + "?range=custom&start=2025-03-01&end=2025-03-31").content
        page = html.decode()
        for name, value in (("start", "2025-03-01"), ("end", "2025-03-31")):
            field = re.search(rf'<input[^>]*name="{name}"[^>]*>', page)
            assert field, name
            assert 'type="text"' in field.group(0) and f'value="{value}"' in field.group(0)
            assert 'placeholder="YYYY-MM-DD"' in field.group(0)


@pytest.mark.parametrize("bad", ["03/01/2025", "2025-13-45", "1 March"])
def test_a_bad_date_is_one_sentence_with_one_full_stop(client_as, fiona, bad) -> None:  # type: ignore[no-untyped-def]
    client = client_as(fiona)
    query = f"?range=custom&start={bad}&end=2025-03-10"
    page = client.get(URL, {"range": "custom", "start": bad, "end": "2025-03-10"})
    text = page.content.decode()
    assert "From (UTC): write the date as YYYY-MM-DD, e.g. 2026-03-31. Showing the default" in text
    assert ".." not in re.sub(r"<[^>]+>", "", text).replace("...", "")
    exported = client.get(
        URL, {"range": "custom", "start": bad, "end": "2025-03-10", "format": "csv"}
    )
    assert exported.status_code == 400 and ".." not in exported.content.decode(), query


def test_the_sort_goes_with_the_next_apply(client_as, fiona, march) -> None:  # type: ignore[no-untyped-def]
    # A header link swaps the report in (htmx); the form outside it must carry the new sort.
    partial = client_as(fiona).htmx("get", URL + "?sort=sessions&dir=asc").content.decode()
    assert '<input type="hidden" name="sort" value="sessions" form="cost-filters">' in partial
    assert '<input type="hidden" name="dir" value="asc" form="cost-filters">' in partial
    page = client_as(fiona).get(URL).content.decode()
    assert '<form id="cost-filters"' in page


def test_the_end_date_is_inclusive_and_the_csv_says_where_it_ends(client_as, fiona, march) -> None:  # type: ignore[no-untyped-def]
    client = client_as(fiona)
    query = {"range": "custom", "start": "2025-03-01", "end": "2025-03-31"}
    page = client.get(URL, query).content.decode()
    assert "To 2026-03-31 covers all of March 31" in page
    assert "range_end" in page and "the midnight that ends that day" in page
    rows = list(
        csv.DictReader(io.StringIO(client.get(URL, {**query, "format": "csv"}).content.decode()))
    )
    (row,) = rows
    assert row["range_start"] == "2025-03-01T00:00:00Z"
    assert row["range_end"] == "2025-04-01T00:00:00Z"
    assert row["range_last_day"] == "2025-03-31"
    # The row the accrual closed at midnight after March 31 is March's.
    assert row["running_seconds"] == "7200.000"


def test_docs_name_every_csv_column_in_order() -> None:
    doc = (Path(settings.BASE_DIR) / "docs" / "cost-per-issue-csv.md").read_text()
    table = doc[doc.index("## Columns") :]
    named = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert named == [name for name, _ in COLUMNS]
    assert "range_last_day" in named
