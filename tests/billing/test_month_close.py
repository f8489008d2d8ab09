"""Month close: frozen totals, late rows as adjustments in the first open month, the
database's refusal, roles, org walls and the audited reopen."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from billing.analytics import CostFilter, cost_per_issue
from billing.closing import (
    CloseRefused,
    close_month,
    month_bounds,
    month_totals,
    months_totals,
    reopen_month,
)
from billing.ledger import reverse_cost_event
from billing.models import CostEvent, CostKind, MonthClose, RateCard
from billing.periods import Period
from rensei.models import AuditEvent
from tests.billing.helpers import at, make_issue, make_session, run

MARCH = date(2025, 3, 1)
APRIL = date(2025, 4, 1)


def march_report(org_id: int) -> Decimal:
    period = Period(date(2025, 3, 1), date(2025, 3, 31), "custom")
    return cost_per_issue(CostFilter(org_id, period)).totals.amount


@pytest.fixture
def closed_march(org_a, fiona):
    issue = make_issue(org_a, "ENG-1")
    session = make_session(org_a, issue=issue)
    first = run(session, at("2025-03-10 10:00"), at("2025-03-10 11:00"))
    run(session, at("2025-03-31 23:00"), at("2025-04-01 00:00"))  # belongs to March 31
    close = close_month(org_a, MARCH, actor=fiona)
    return {"session": session, "first": first, "close": close}


def test_close_freezes_the_month_totals(org_a, closed_march):
    close = closed_march["close"]
    assert close.entries == 2
    assert close.amount == month_totals(org_a.pk, MARCH)["amount"]
    assert close.amount == march_report(org_a.pk)
    assert AuditEvent.objects.filter(action="billing.month_closed", target="2025-03").exists()


def test_late_usage_lands_in_the_first_open_month_as_an_adjustment(org_a, closed_march):
    frozen = closed_march["close"].amount
    # An interval of March closes after the close (a late event).
    late = run(closed_march["session"], at("2025-03-20 10:00"), at("2025-03-20 10:30"))
    assert late.kind == CostKind.ADJUSTMENT
    assert late.adjusts_month == MARCH
    assert late.interval_end == at("2025-03-20 10:30")
    assert late.usage_day.month == 4  # dated in April, the first open month
    assert "2025-03" in late.reason
    assert month_totals(org_a.pk, MARCH)["amount"] == frozen
    assert march_report(org_a.pk) == frozen


def test_a_reversal_of_a_closed_months_row_is_dated_in_the_first_open_month(
    org_a, alice, closed_march
):
    frozen = closed_march["close"].amount
    reversal = reverse_cost_event(closed_march["first"], reason="duplicate", actor=alice)
    assert reversal.adjusts_month == MARCH
    assert reversal.usage_day >= APRIL
    assert month_totals(org_a.pk, MARCH)["amount"] == frozen
    assert month_totals(org_a.pk, APRIL)["amount"] == -closed_march["first"].amount


def test_skips_every_closed_month_to_the_first_open_one(org_a, fiona, closed_march):
    close_month(org_a, APRIL, actor=fiona)
    late = run(closed_march["session"], at("2025-03-05 10:00"), at("2025-03-05 10:01"))
    assert late.usage_day == date(2025, 5, 31)  # May is a past open month: its last day
    assert late.adjusts_month == MARCH


def test_the_database_refuses_a_row_dated_in_a_closed_month(org_a, closed_march):
    first = closed_march["first"]
    with pytest.raises(DatabaseError), transaction.atomic():
        CostEvent.objects.create(
            org=org_a,
            provider="e2b",
            quantity_seconds=Decimal(1),
            vcpu=1,
            memory_mb=512,
            rate_card=RateCard.objects.get(pk=first.rate_card_id),
            amount=Decimal("0.01"),
            occurred_at=at("2025-03-15 12:00"),
            idempotency_key="sneaky",
        )
    assert month_totals(org_a.pk, MARCH)["amount"] == closed_march["close"].amount


def test_the_database_refuses_changing_a_close(org_a, closed_march):
    close = closed_march["close"]
    for sql in (
        "UPDATE billing_monthclose SET amount = 0 WHERE id = %s",
        # A reopen without a reason.
        "UPDATE billing_monthclose SET reopened_at = closed_at WHERE id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [close.pk])
    assert MonthClose.objects.get(pk=close.pk).amount == close.amount


@pytest.mark.postgres
def test_postgres_rejects_updates_of_a_closed_months_rows(require_postgres, org_a, closed_march):
    close, first = closed_march["close"], closed_march["first"]
    for sql, arg in (
        ("UPDATE billing_costevent SET amount = 0 WHERE id = %s", first.pk),
        ("UPDATE billing_costevent SET occurred_at = occurred_at WHERE id = %s", first.pk),
        ("UPDATE billing_dailycost SET amount = 0 WHERE org_id = %s", org_a.pk),
        ("UPDATE billing_monthclose SET entries = 0 WHERE id = %s", close.pk),
        ("DELETE FROM billing_monthclose WHERE id = %s", close.pk),
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [arg])
    assert "billing_costevent_closed_month" in {
        name
        for (name,) in _pg_triggers("billing_costevent")  # installed by migration 0006
    }
    assert month_totals(org_a.pk, MARCH)["amount"] == close.amount


def _pg_triggers(table: str) -> list[tuple[str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            [table],
        )
        return list(cursor.fetchall())


def test_reopen_needs_a_reason_and_is_audited(org_a, alice, closed_march):
    with pytest.raises(CloseRefused):
        reopen_month(org_a, MARCH, reason="  ", actor=alice)
    reopen_month(org_a, MARCH, reason="E2B credit note", actor=alice)
    event = AuditEvent.objects.get(action="billing.month_reopened")
    assert event.detail["reason"] == "E2B credit note"
    assert event.actor == alice
    # Open again: a row for March is dated in March.
    row = run(closed_march["session"], at("2025-03-21 10:00"), at("2025-03-21 10:05"))
    assert row.kind == CostKind.SANDBOX_SECONDS and row.adjusts_month is None
    # A reopened close is history: the database refuses to change it again.
    old = MonthClose.objects.get(org=org_a, month=MARCH)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_monthclose SET reopen_reason = 'other' WHERE id = %s", [old.pk]
        )


def test_closing_refuses_an_open_month_and_a_second_close(org_a, fiona, closed_march):
    with pytest.raises(CloseRefused, match="closed already"):
        close_month(org_a, MARCH, actor=fiona)
    with pytest.raises(CloseRefused, match="not ended"):
        close_month(org_a, date(2999, 1, 1), actor=fiona)


# --- pages: roles and org walls ----------------------------------------------------------


def test_roles_on_the_month_pages(client_as, org_a, alice, bob, fiona, closed_march):
    assert client_as(bob).get("/billing/months/").status_code == 403
    page = client_as(fiona).get("/billing/months/")
    assert page.status_code == 200
    assert b"2025-03" in page.content  # the history lists March's close
    # Finance closes, but does not reopen.
    assert client_as(fiona).post("/billing/months/2025-02/close/").status_code == 302
    assert MonthClose.objects.filter(org=org_a, month=date(2025, 2, 1)).exists()
    assert (
        client_as(fiona).post("/billing/months/2025-03/reopen/", {"reason": "x"}).status_code == 403
    )
    assert client_as(bob).post("/billing/months/2025-01/close/").status_code == 403
    # An admin reopens only with a reason.
    refused = client_as(alice).post("/billing/months/2025-03/reopen/", {"reason": ""})
    assert refused.status_code == 400
    assert b"Say why the month is reopened" in refused.content
    assert MonthClose.objects.get(org=org_a, month=MARCH).reopened_at is None
    done = client_as(alice).post("/billing/months/2025-03/reopen/", {"reason": "credit note"})
    assert done.status_code == 302
    assert MonthClose.objects.get(org=org_a, month=MARCH).reopen_reason == "credit note"


def test_bad_months_and_the_current_month(client_as, fiona):
    assert client_as(fiona).get("/billing/months/2025-13/close/").status_code == 404
    assert client_as(fiona).get("/billing/months/soon/close/").status_code == 404
    refused = client_as(fiona).post("/billing/months/2999-01/close/")
    assert refused.status_code == 409
    assert b"has not ended" in refused.content


def test_org_walls(client_as, org_a, charlie, closed_march):
    # Org A's March close is invisible to org B's admin and cannot be reopened by them.
    assert client_as(charlie).get("/billing/months/2025-03/reopen/").status_code == 404
    assert (
        client_as(charlie).post("/billing/months/2025-03/reopen/", {"reason": "mine"}).status_code
        == 404
    )
    assert MonthClose.objects.get(org=org_a, month=MARCH).reopened_at is None
    # Closing March in org B closes org B's March only.
    assert client_as(charlie).post("/billing/months/2025-03/close/").status_code == 302
    other = MonthClose.objects.get(org=charlie.memberships.get().org, month=MARCH)
    assert other.amount == 0 and other.entries == 0


def test_cost_per_issue_shows_a_closed_month_with_its_frozen_total(client_as, fiona, closed_march):
    page = client_as(fiona).get(
        "/analytics/cost-per-issue/",
        {"range": "custom", "start": "2025-03-01", "end": "2025-04-30"},
    )
    assert page.status_code == 200
    assert b'data-closed-month="2025-03"' in page.content
    assert b'data-closed-month="2025-04"' not in page.content


def test_the_ledger_page_labels_a_late_row(client_as, fiona, closed_march):
    run(closed_march["session"], at("2025-03-20 10:00"), at("2025-03-20 10:30"))
    page = client_as(fiona).get(
        "/billing/ledger/", {"range": "custom", "start": "2025-04-01", "end": "2025-04-30"}
    )
    assert b"Adjustment for 2025-03 (closed)" in page.content


def test_months_totals_are_each_months_ledger_sums(org_a, org_b, closed_march):
    """One query for a range of months, each month's figures equal to its ledger rows (a row
    closed at midnight belongs to the month that just ended); other orgs never count."""
    session = closed_march["session"]
    run(session, at("2025-04-02 09:00"), at("2025-04-02 09:00:01.5"))
    run(session, at("2025-05-31 23:59"), at("2025-06-01 00:00"))
    run(make_session(org_b), at("2025-04-03 10:00"), at("2025-04-03 12:00"))
    found = months_totals(org_a.pk, date(2025, 2, 1), date(2025, 6, 1))
    assert list(found) == [date(2025, m, 1) for m in range(2, 7)]
    for month, totals in found.items():
        expected = CostEvent.objects.filter(org=org_a).in_period(*month_bounds(month)).totals()
        assert totals == {
            "amount": expected["amount"],
            "seconds": expected["seconds"],
            "entries": expected["n"],
        }
        assert month_totals(org_a.pk, month) == totals
    assert found[date(2025, 3, 1)]["entries"] == 2
    assert found[date(2025, 4, 1)]["entries"] == 1
    assert found[date(2025, 5, 1)]["entries"] == 1  # May 31's last minute
    assert found[date(2025, 6, 1)]["entries"] == 0


def test_a_new_org_lists_only_the_months_it_has(client_as, org_b, charlie):
    """No empty rows for the months before an org existed; history imported from earlier
    shows from its first usage day."""
    page = client_as(charlie).get("/billing/months/").content.decode()
    assert page.count("data-month=") == 1
    run(make_session(org_b), at("2025-03-10 10:00"), at("2025-03-10 11:00"))
    page = client_as(charlie).get("/billing/months/").content.decode()
    assert page.count("data-month=") == 12  # March 2025 is more than 12 months ago
