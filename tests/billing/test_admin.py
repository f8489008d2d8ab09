"""Staff in the Django admin: the ledger is read-only; a correction is a reversing row."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from billing.forms import tomorrow_midnight
from billing.models import CostEvent, RateCard
from rensei.models import AuditEvent, Channel
from tests.billing.helpers import at, ledger_sum, make_issue, make_session, run

CHANGELIST = "/admin/billing/costevent/"


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("sam", "sam@example.com", "pw-sam")


@pytest.fixture
def row(org_a):
    return run(
        make_session(org_a, issue=make_issue(org_a, "ENG-1")),
        at("2025-03-09 10:00"),
        at("2025-03-09 11:00"),
    )


def _reverse(client, pk, **extra):
    data = {"action": "reverse_entries", "_selected_action": [pk], **extra}
    return client.post(CHANGELIST, data)


def test_reverse_entry_asks_for_a_reason_then_writes_the_negative_row(client_as, staff, row):
    client = client_as(staff)
    ask = _reverse(client, row.pk)
    assert ask.status_code == 200
    html = ask.content.decode()
    assert "Reason for the reversal" in html and row.idempotency_key in html
    assert 'name="confirm"' in html
    assert CostEvent.objects.count() == 1

    done = _reverse(client, row.pk, confirm="yes", reason="Billed twice during the outage")
    assert done.status_code == 302
    reversal = CostEvent.objects.get(reverses=row)
    assert reversal.amount == -row.amount and reversal.quantity_seconds == -row.quantity_seconds
    assert reversal.reason == "Billed twice during the outage" and reversal.actor == staff
    assert reversal.idempotency_key == f"reversal:{row.pk}"
    assert ledger_sum() == 0
    audit = AuditEvent.objects.get(action="ledger.reversed")
    assert audit.channel == Channel.ADMIN and audit.actor == staff
    page = client.get(done["Location"]).content.decode()
    assert f"Reversed 1 ledger entry: #{row.pk}" in page


def test_reversing_twice_is_refused_with_a_message(client_as, staff, row):
    client = client_as(staff)
    _reverse(client, row.pk, confirm="yes", reason="first")
    again = _reverse(client, row.pk, confirm="yes", reason="second")
    assert CostEvent.objects.count() == 2
    page = client.get(again["Location"]).content.decode()
    assert f"Already reversed, refused: #{row.pk}" in page
    assert AuditEvent.objects.filter(action="ledger.reversed").count() == 1


def test_a_reason_is_required(client_as, staff, row):
    resp = _reverse(client_as(staff), row.pk, confirm="yes", reason="   ")
    assert resp.status_code == 400
    assert (
        "This field is required" in resp.content.decode()
        or "A reason is required" in resp.content.decode()
    )
    assert CostEvent.objects.count() == 1


def test_ledger_rows_cannot_be_added_changed_or_deleted(client_as, staff, row):
    client = client_as(staff)
    view = client.get(f"{CHANGELIST}{row.pk}/change/")
    assert view.status_code == 200  # read-only view
    assert 'name="_save"' not in view.content.decode()
    post = client.post(f"{CHANGELIST}{row.pk}/change/", {"amount": "0", "reason": "edited"})
    assert post.status_code == 403
    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk_delete = client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )
    assert bulk_delete.status_code in (200, 302)
    fresh = CostEvent.objects.get(pk=row.pk)
    assert fresh.amount == row.amount and fresh.reason == ""


def test_staff_without_the_reverse_permission_cannot_reverse(client_as, row):
    clerk = get_user_model().objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_costevent"))
    client = client_as(clerk)
    page = client.get(CHANGELIST).content.decode()
    assert "Reverse entry" not in page
    _reverse(client, row.pk, confirm="yes", reason="sneaky")
    assert CostEvent.objects.count() == 1


def test_rate_cards_start_at_a_future_utc_midnight(client_as, staff):
    client = client_as(staff)
    # Dates from the real clock: the database freezes cards by its own, which no time
    # machine moves.
    start = tomorrow_midnight() + timedelta(days=21)
    day, past_day = f"{start:%Y-%m-%d}", f"{start - timedelta(days=30):%Y-%m-%d}"
    base = {
        "provider": "e2b",
        "vcpu_second_price": "0.000015",
        "gib_second_price": "0.000005",
        "currency": "USD",
        "basis": "allocated vCPU and RAM, per running second",
    }
    past = client.post(
        "/admin/billing/ratecard/add/",
        {**base, "effective_from_0": past_day, "effective_from_1": "00:00:00"},
    )
    assert "past usage keeps the rate" in past.content.decode()
    noon = client.post(
        "/admin/billing/ratecard/add/",
        {**base, "effective_from_0": day, "effective_from_1": "12:00:00"},
    )
    assert "UTC midnight" in noon.content.decode()
    ok = client.post(
        "/admin/billing/ratecard/add/",
        {**base, "effective_from_0": day, "effective_from_1": "00:00:00"},
    )
    assert ok.status_code == 302
    card = RateCard.objects.get(effective_from=start)
    assert card.vcpu_second_price == Decimal("0.000015")
    # A card already in effect is read-only.
    seeded = RateCard.objects.get(effective_from=at("2024-01-01 00:00"))
    view = client.get(f"/admin/billing/ratecard/{seeded.pk}/change/")
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    edit = client.post(
        f"/admin/billing/ratecard/{seeded.pk}/change/",
        {**base, "effective_from_0": "2024-01-01", "effective_from_1": "00:00:00"},
    )
    assert edit.status_code == 403
    assert RateCard.objects.get(pk=seeded.pk).vcpu_second_price == Decimal("0.000014")
    # A future one can still be corrected before it starts.
    fix = client.post(
        f"/admin/billing/ratecard/{card.pk}/change/",
        {
            **base,
            "vcpu_second_price": "0.000016",
            "effective_from_0": day,
            "effective_from_1": "00:00:00",
        },
    )
    assert fix.status_code == 302
