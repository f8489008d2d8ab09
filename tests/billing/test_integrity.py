"""The database guards around billing (billing/triggers.py, migration 0005) and the ledger
check (``manage.py check_ledger``, billing.integrity)."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from billing import triggers
from billing.integrity import check_ledger, mismatches
from billing.ledger import ReversalNotReversible, reverse_cost_event
from billing.models import CostEvent, DailyCost, RateCard
from rensei.models import AuditEvent
from tests.billing.helpers import at, make_session, run
from tests.factories import RateCardFactory


def refused(sql: str, params: list[Any] | None = None, *, truncate: bool = False) -> str:
    """Run ``sql`` in a savepoint; it must fail. Returns the database's message."""
    with (
        pytest.raises(DatabaseError) as caught,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        if truncate:
            # The test settings let the test runner's flush TRUNCATE; not this statement.
            cursor.execute(f"SET LOCAL {triggers.ALLOW_TRUNCATE} = 'off'")
            # Check the test's deferred foreign keys now: TRUNCATE refuses pending events.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(sql, params or [])
    return str(caught.value)


@pytest.mark.postgres
@pytest.mark.parametrize("table", [triggers.LEDGER, triggers.ROLLUP, triggers.RATE_CARD])
def test_postgres_refuses_truncate_of_billing_tables(db_owner, require_postgres, org_a, table):
    # As the owner: the application's role may not TRUNCATE at all (test_least_privilege);
    # the trigger stops even the owner.
    row = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    # CASCADE: a plain TRUNCATE of a table others refer to fails on the foreign keys first.
    for sql in (f"TRUNCATE {table} CASCADE", f"TRUNCATE {triggers.LEDGER}, {table} CASCADE"):
        assert "billing rows are never wiped" in refused(sql, truncate=True)
    assert CostEvent.objects.filter(pk=row.pk).exists()
    assert DailyCost.objects.count() == 1 and RateCard.objects.exists()


@pytest.mark.postgres
def test_postgres_rollup_moves_only_with_the_ledger(require_postgres, org_a):
    run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    cost = DailyCost.objects.get()
    for sql, params in (
        (f"UPDATE {triggers.ROLLUP} SET amount = 0 WHERE id = %s", [cost.pk]),
        (f"DELETE FROM {triggers.ROLLUP} WHERE id = %s", [cost.pk]),
        (
            f"INSERT INTO {triggers.ROLLUP} ({triggers.ROLLUP_COLUMNS}) "
            "VALUES (%s, '2025-03-02', NULL, NULL, 'e2b', 1, 1, 1, 1)",
            [org_a.pk],
        ),
    ):
        assert "rollup moves only with the ledger" in refused(sql, params)
    with pytest.raises(DatabaseError), transaction.atomic():
        DailyCost.objects.filter(pk=cost.pk).update(amount=Decimal(0))
    assert DailyCost.objects.get().amount == cost.amount and mismatches() == []
    # The ledger's own path still moves it: a second row adds to the same day.
    run(make_session(org_a), at("2025-03-01 11:00"), at("2025-03-01 11:10"))
    assert DailyCost.objects.get().entries == 2 and mismatches() == []


@pytest.mark.postgres
def test_postgres_rollup_rebuild_is_the_owners_maintenance(db_owner, require_postgres, org_a):
    run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    with transaction.atomic():
        triggers.rebuild_rollup(connection)
    assert DailyCost.objects.get().entries == 1 and mismatches() == []


@pytest.mark.postgres
def test_postgres_freezes_rate_cards_in_effect(require_postgres, db):
    card = RateCardFactory.create()
    message = refused(
        f"UPDATE {triggers.RATE_CARD} SET vcpu_second_price = 0 WHERE id = %s", [card.pk]
    )
    assert "in effect" in message
    card.refresh_from_db()
    assert card.vcpu_second_price != 0
    # A future card can still be corrected before it starts.
    future = RateCardFactory.create(effective_from=timezone.now() + timedelta(days=2))
    RateCard.objects.filter(pk=future.pk).update(vcpu_second_price=Decimal("0.00002"))
    future.refresh_from_db()
    assert future.vcpu_second_price == Decimal("0.00002")


def test_sqlite_and_postgres_freeze_rate_cards_in_effect_through_the_orm(db):
    card = RateCardFactory.create()
    with pytest.raises(DatabaseError), transaction.atomic():
        RateCard.objects.filter(pk=card.pk).update(vcpu_second_price=Decimal(0))
    card.refresh_from_db()
    assert card.vcpu_second_price != 0


def test_a_reversal_is_never_reversed(org_a, alice):
    original = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 11:00"))
    reversal = reverse_cost_event(original, reason="duplicate", actor=alice)
    with pytest.raises(ReversalNotReversible):
        reverse_cost_event(reversal, reason="undo the undo", actor=alice)
    assert CostEvent.objects.count() == 2
    assert CostEvent.objects.totals()["amount"] == 0


def test_the_database_refuses_a_reversal_of_a_reversal(org_a, alice):
    original = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 11:00"))
    reversal = reverse_cost_event(original, reason="duplicate", actor=alice)
    with pytest.raises(DatabaseError), transaction.atomic():
        # Past the application's check: the row a bypassing writer would insert.
        CostEvent.objects.create(
            org=org_a,
            provider=reversal.provider,
            quantity_seconds=-reversal.quantity_seconds,
            vcpu=reversal.vcpu,
            memory_mb=reversal.memory_mb,
            rate_card_id=reversal.rate_card_id,
            amount=-reversal.amount,
            occurred_at=reversal.occurred_at,
            idempotency_key="reversal-of-reversal",
            reverses=reversal,
            reason="raw",
        )
    assert CostEvent.objects.count() == 2


def test_check_ledger_passes_when_the_rollup_equals_the_ledger(org_a, alice, capsys):
    rows = [
        run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10")),
        run(make_session(org_a), at("2025-03-02 00:00"), at("2025-03-02 00:00:01")),
    ]
    reverse_cost_event(rows[0], reason="test", actor=alice)
    call_command("check_ledger")
    assert "rollup equals the ledger" in capsys.readouterr().out
    assert check_ledger() == 0


def _drift_the_rollup() -> None:
    """A rollup that drifted (what the guards now stop): written past the guards, which
    takes the owner (``db_owner``; on PostgreSQL a superuser)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(f"UPDATE {triggers.ROLLUP} SET amount = amount + 1")


def test_check_ledger_fails_loudly_on_a_mismatch(db_owner, org_a, caplog):
    run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    with transaction.atomic():
        _drift_the_rollup()
    found = mismatches()
    assert len(found) == 1 and found[0].key[0] == org_a.pk
    with (
        caplog.at_level(logging.ERROR, logger="billing.integrity"),
        pytest.raises(CommandError, match="disagrees with the ledger in 1 group"),
    ):
        call_command("check_ledger")
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert AuditEvent.objects.filter(org=org_a, action="ledger.mismatch").count() == 1
    # The beat task reports the same and alerts again.
    assert check_ledger() == 1
    assert AuditEvent.objects.filter(org=org_a, action="ledger.mismatch").count() == 2


def test_check_ledger_sees_a_group_missing_from_the_rollup(db_owner, org_a):
    run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(f"DELETE FROM {triggers.ROLLUP}")
    [missing] = mismatches()
    assert missing.rollup is None and missing.ledger is not None


def test_beat_runs_the_ledger_check_daily(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["check-ledger"]
    assert entry["task"] == "billing.integrity.check_ledger"
    assert check_ledger.name == entry["task"]


def test_the_admin_refuses_to_reverse_a_reversal(client_as, org_a, alice):
    staff = get_user_model().objects.create_superuser("sam", "sam@example.com", "pw-sam")
    client = client_as(staff)
    original = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 11:00"))
    reversal = reverse_cost_event(original, reason="duplicate", actor=alice)
    done = client.post(
        "/admin/billing/costevent/",
        {
            "action": "reverse_entries",
            "_selected_action": [reversal.pk],
            "confirm": "yes",
            "reason": "undo the undo",
        },
    )
    assert done.status_code == 302
    page = client.get(done["Location"]).content.decode()
    assert f"Reversals are never reversed, refused: #{reversal.pk}" in page
    assert CostEvent.objects.count() == 2
