"""The ledger: exactly-once rows, the price formula, append-only at every layer, the rollup."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from billing import close_triggers, triggers
from billing.ledger import (
    AlreadyReversed,
    emit_sandbox_cost_event,
    reverse_cost_event,
)
from billing.models import CostEvent, DailyCost, LedgerIsAppendOnly, RateCard
from rensei.models import AuditEvent, Channel
from sessions.intervals import close_open_interval, open_interval
from sessions.models import RunningInterval
from tests.billing.helpers import (
    at,
    expected_amount,
    ledger_sum,
    make_issue,
    make_pool,
    make_session,
    run,
)
from tests.factories import RateCardFactory


def test_closing_an_interval_writes_one_priced_row(org_a):
    issue = make_issue(org_a, "ENG-1")
    pool = make_pool(org_a)
    session = make_session(org_a, issue=issue, pool=pool, vcpu=2, memory_mb=512)
    row = run(session, at("2025-03-01 10:00"), at("2025-03-01 11:30:00"))

    assert row.quantity_seconds == Decimal("5400.000")
    # 5400 s × (2 × 0.000014 + 0.5 × 0.0000045) = 0.16335
    assert row.amount == Decimal("0.163350000000") == expected_amount(5400, 2, 512)
    assert (row.org, row.issue, row.pool, row.session) == (org_a, issue, pool, session)
    assert row.provider == "e2b" and row.currency == "USD"
    assert row.rate_card.vcpu_second_price == Decimal("0.000014")
    assert row.idempotency_key == (
        f"sandbox-seconds:session-{session.pk}:interval-{RunningInterval.objects.get().pk}"
    )
    assert isinstance(row.amount, Decimal)


def test_emission_is_exactly_once(org_a):
    session = make_session(org_a)
    row = run(session, at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    interval = RunningInterval.objects.get()
    again = emit_sandbox_cost_event(interval)
    assert again.pk == row.pk
    # Closing again finds nothing open and bills nothing.
    assert close_open_interval(session, at=at("2025-03-01 10:20"), reason="terminate") is None
    assert CostEvent.objects.count() == 1


def test_an_open_interval_cannot_be_billed(org_a):
    session = make_session(org_a)
    interval = open_interval(session, at=at("2025-03-01 10:00"))
    with pytest.raises(ValueError):
        emit_sandbox_cost_event(interval)


def test_milliseconds_are_billed_exactly(org_a):
    session = make_session(org_a, vcpu=8, memory_mb=8192)
    row = run(session, at("2025-03-01 10:00"), at("2025-03-01 10:00") + timedelta(milliseconds=1))
    assert row.quantity_seconds == Decimal("0.001")
    assert row.amount == Decimal("0.000000148000")  # 0.001 × (8 × 0.000014 + 8 × 0.0000045)


def test_a_rate_applies_from_its_effective_midnight_and_never_rewrites_rows(org_a):
    session = make_session(org_a, vcpu=1, memory_mb=1024)
    before = run(session, at("2025-03-01 10:00"), at("2025-03-01 11:00"))
    RateCardFactory.create(
        provider="e2b",
        effective_from=at("2025-03-02 00:00"),
        vcpu_second_price=Decimal("0.00002"),
        gib_second_price=Decimal("0.00001"),
    )
    after = run(session, at("2025-03-02 00:00"), at("2025-03-02 01:00"))
    assert before.amount == Decimal("0.066600000000")  # 3600 × (0.000014 + 0.0000045)
    assert after.amount == Decimal("0.108000000000")  # 3600 × (0.00002 + 0.00001)
    assert CostEvent.objects.get(pk=before.pk).amount == before.amount


def test_model_and_queryset_refuse_changes(org_a):
    row = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    row.amount = Decimal(0)
    with pytest.raises(LedgerIsAppendOnly):
        row.save()
    with pytest.raises(LedgerIsAppendOnly):
        row.delete()
    with pytest.raises(LedgerIsAppendOnly):
        CostEvent.objects.filter(pk=row.pk).update(amount=0)
    with pytest.raises(LedgerIsAppendOnly):
        CostEvent.objects.filter(pk=row.pk).delete()
    with pytest.raises(LedgerIsAppendOnly):
        org_a.cost_events.all().delete()
    assert CostEvent.objects.get(pk=row.pk).amount != 0


def test_database_refuses_raw_update(org_a):
    """On both backends the database itself refuses an UPDATE of a ledger row."""
    row = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_costevent SET amount = 0 WHERE id = %s", [row.pk])
    assert CostEvent.objects.get(pk=row.pk).amount == row.amount


@pytest.mark.postgres
def test_postgres_refuses_raw_update_and_delete(require_postgres, org_a):
    row = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    assert triggers.installed(connection) >= {
        "billing_costevent_append_only",
        "billing_costevent_rollup",
    }
    for sql in (
        "UPDATE billing_costevent SET amount = 0 WHERE id = %s",
        "UPDATE billing_costevent SET reason = 'edited' WHERE id = %s",
        "DELETE FROM billing_costevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError) as caught,
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [row.pk])
        assert "append-only" in str(caught.value)
    assert CostEvent.objects.filter(pk=row.pk, amount=row.amount).exists()


def test_rollup_equals_the_ledger_per_day_issue_and_pool(org_a):
    a, b = make_issue(org_a, "ENG-1"), make_issue(org_a, "ENG-2")
    pool = make_pool(org_a)
    s1 = make_session(org_a, issue=a, pool=pool)
    s2 = make_session(org_a, issue=b, vcpu=4, memory_mb=2048)
    s3 = make_session(org_a)  # unattributed, no pool
    run(s1, at("2025-03-01 10:00"), at("2025-03-01 10:07:01"))
    run(s1, at("2025-03-01 12:00"), at("2025-03-02 00:00"))  # closed at midnight → Mar 1
    run(s2, at("2025-03-02 00:00"), at("2025-03-02 03:00"))
    run(s3, at("2025-03-02 05:00"), at("2025-03-02 05:00:00.5"))
    run(s3, at("2025-03-02 06:00"), at("2025-03-02 06:30"))
    reverse_cost_event(CostEvent.objects.filter(session=s2).get(), reason="test", actor=None)

    rollup = {
        (r.day.isoformat(), r.issue_id, r.pool_id): (r.amount, r.quantity_seconds, r.entries)
        for r in DailyCost.objects.all()
    }
    assert rollup[("2025-03-01", a.pk, pool.pk)][2] == 2
    assert rollup[("2025-03-01", a.pk, pool.pk)][0] == ledger_sum(session=s1)
    assert rollup[("2025-03-02", b.pk, None)][:2] == (Decimal(0), Decimal(0))
    assert rollup[("2025-03-02", None, None)][2] == 2  # NULL issue and pool collapse
    assert sum(v[0] for v in rollup.values()) == ledger_sum()
    row = DailyCost.objects.get(day="2025-03-01")
    assert row.vcpu_seconds == row.quantity_seconds * 2


def test_rollup_follows_bulk_inserts(org_a):
    """Any insert path feeds the rollup (the trigger lives in the database)."""
    card = RateCard.objects.get(provider="e2b")
    issue = make_issue(org_a, "ENG-9")
    CostEvent.objects.bulk_create(
        CostEvent(
            org=org_a,
            issue=issue,
            provider="e2b",
            quantity_seconds=Decimal(60),
            vcpu=2,
            memory_mb=512,
            rate_card=card,
            amount=Decimal("0.001815"),
            occurred_at=at("2025-03-01 10:00") + timedelta(minutes=i),
            idempotency_key=f"bulk-{i}",
        )
        for i in range(25)
    )
    rollup = DailyCost.objects.get()
    assert rollup.entries == 25
    assert rollup.amount == Decimal("0.045375") == ledger_sum()


def test_reversal_writes_the_negative_row_and_an_audit_event(org_a, alice):
    issue = make_issue(org_a, "ENG-1")
    pool = make_pool(org_a)
    session = make_session(org_a, issue=issue, pool=pool)
    original = run(session, at("2025-03-01 10:00"), at("2025-03-01 11:00"))

    reversal = reverse_cost_event(original, reason="sandbox double-billed", actor=alice)
    assert reversal.reverses == original
    assert reversal.amount == -original.amount
    assert reversal.quantity_seconds == -original.quantity_seconds
    assert (reversal.org, reversal.session, reversal.issue, reversal.pool) == (
        org_a,
        session,
        issue,
        pool,
    )
    assert reversal.idempotency_key == f"reversal:{original.pk}"
    assert reversal.reason == "sandbox double-billed" and reversal.actor == alice
    assert reversal.occurred_at == original.occurred_at
    assert ledger_sum(org=org_a) == 0
    audit = AuditEvent.objects.get(action="ledger.reversed")
    assert audit.channel == Channel.ADMIN and audit.actor == alice and audit.org == org_a
    assert audit.detail["reversed"] == original.pk and audit.detail["reversal"] == reversal.pk

    with pytest.raises(AlreadyReversed):
        reverse_cost_event(original, reason="again", actor=alice)
    assert CostEvent.objects.count() == 2
    assert AuditEvent.objects.filter(action="ledger.reversed").count() == 1


def test_reversal_needs_a_reason(org_a, alice):
    original = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 11:00"))
    with pytest.raises(ValueError):
        reverse_cost_event(original, reason="   ", actor=alice)
    assert CostEvent.objects.count() == 1


def test_triggers_are_installed(db):
    names = triggers.installed(connection)
    if connection.vendor == "sqlite":
        assert names == {*triggers.SQLITE_TRIGGERS, "billing_costevent_closed_month"}
    else:
        assert {"billing_costevent_append_only", "billing_costevent_rollup"} <= names


def test_sqlite_triggers_come_back_after_a_table_rebuild(db):
    """SQLite drops triggers when a migration rebuilds the table; post_migrate restores them."""
    from billing.apps import _reinstall_sqlite_triggers

    before = triggers.installed(connection)
    if connection.vendor == "sqlite":
        triggers.uninstall(connection)
        close_triggers.uninstall(connection)
        assert triggers.installed(connection) == set()
    _reinstall_sqlite_triggers(using="default")
    # Back on SQLite; untouched on PostgreSQL (it keeps triggers across ALTER TABLE).
    assert triggers.installed(connection) == before
