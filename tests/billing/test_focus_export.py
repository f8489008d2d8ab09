"""The FOCUS export: the column list in docs/focus-export.md, validated row by row, and the
sum of BilledCost equal to the page's total to the cent."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing.closing import close_month
from billing.focus import COLUMNS
from billing.ledger import reverse_cost_event
from tests.billing.helpers import at, make_issue, make_pool, make_session, run

DOC = Path(__file__).resolve().parents[2] / "docs" / "focus-export.md"
QUERY = {"range": "custom", "start": "2025-03-01", "end": "2025-04-30"}
ISO = "%Y-%m-%dT%H:%M:%SZ"


def documented() -> list[tuple[str, bool]]:
    """(column, required) from the doc's Columns table, in order."""
    rows = re.findall(r"^\| `(\w+)` \| (yes|no) \|", DOC.read_text(), flags=re.M)
    return [(name, required == "yes") for name, required in rows]


def export(client, **extra: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    response = client.get("/analytics/cost-per-issue/", {**QUERY, "format": "focus", **extra})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode()
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == [name for name, _ in documented()]
    return list(reader)


def page_total(client, **extra: str) -> Decimal:  # type: ignore[no-untyped-def]
    page = client.get("/analytics/cost-per-issue/", {**QUERY, **extra}).content.decode()
    found = re.search(r'title="(-?[0-9.]+) USD">[^<]*</div></div></div>', page)
    assert found, "the page shows its total with the exact amount"
    return Decimal(found.group(1))


@pytest.fixture
def ledger(org_a, alice):
    pool = make_pool(org_a, "main")
    other = make_pool(org_a, "=cmd")  # a name a spreadsheet would run
    issue = make_issue(org_a, "ENG-7")
    s1 = make_session(org_a, issue=issue, pool=pool)
    s2 = make_session(org_a, pool=other, vcpu=4, memory_mb=4096)
    first = run(s1, at("2025-03-03 10:00"), at("2025-03-03 10:00:07"))
    run(s1, at("2025-03-31 23:00"), at("2025-04-01 00:00"))  # March 31
    run(s2, at("2025-04-02 09:00"), at("2025-04-02 09:13:01.5"))
    reverse_cost_event(first, reason="duplicate", actor=alice)
    close_month(org_a, at("2025-04-01 00:00").date().replace(month=3), actor=alice)
    # A late row for the closed March, dated in April.
    run(s1, at("2025-03-20 10:00"), at("2025-03-20 10:05"))
    return {"pool": pool}


def test_the_export_matches_the_documented_columns(client_as, fiona, ledger):
    assert list(COLUMNS) == [name for name, _ in documented()]
    rows = export(client_as(fiona))
    assert len(rows) == 5
    required = [name for name, req in documented() if req]
    for row in rows:
        for name in required:
            assert row[name] != "", name
        Decimal(row["BilledCost"])
        for name in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart"):
            datetime.strptime(row[name], ISO)
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"]
        assert row["ChargeCategory"] in {"Usage", "Adjustment"}
        assert row["ChargeClass"] == ("Correction" if row["ChargeCategory"] == "Adjustment" else "")
        tags = json.loads(row["Tags"])
        assert tags["rensei:org"] == "org-a"
    categories = [r["ChargeCategory"] for r in rows]
    assert categories.count("Adjustment") == 2  # the reversal and the late row
    late = [r for r in rows if "rensei:adjusts_month" in r["Tags"]]
    assert json.loads(late[0]["Tags"])["rensei:adjusts_month"] == "2025-03"
    assert late[0]["ChargePeriodStart"] == "2025-03-20T10:00:00Z"
    assert any(json.loads(r["Tags"]).get("rensei:issue") == "ENG-7" for r in rows)
    assert any(r["SubAccountName"] == "'=cmd" for r in rows)  # never a formula


@pytest.mark.parametrize("extra", [{}, {"pool": "main"}])
def test_billed_cost_sums_to_the_pages_total_to_the_cent(client_as, fiona, ledger, extra):
    if extra:
        extra = {"pool": str(ledger["pool"].pk)}
    client = client_as(fiona)
    total = sum((Decimal(r["BilledCost"]) for r in export(client, **extra)), Decimal(0))
    shown = page_total(client, **extra)
    assert total.quantize(Decimal("0.01")) == shown.quantize(Decimal("0.01"))
    assert total == shown  # exactly, in fact: the same ledger rows


def test_roles_walls_and_bad_filters(client_as, bob, fiona, charlie, ledger):
    assert client_as(bob).get("/analytics/cost-per-issue/", {"format": "focus"}).status_code == 403
    # Another org's export holds none of org A's rows.
    assert export(client_as(charlie)) == []
    refused = client_as(fiona).get(
        "/analytics/cost-per-issue/", {**QUERY, "format": "focus", "start": "2025-99-01"}
    )
    assert refused.status_code == 400 and b"YYYY-MM-DD" in refused.content
