"""The application's database role (``manage.py grant_app_role``) works with rows and cannot
touch the guards: no ALTER/DISABLE TRIGGER, no TRUNCATE, no owner maintenance switch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from billing import triggers
from billing.models import CostEvent, DailyCost
from tests.billing.helpers import at, make_session, run

pytestmark = pytest.mark.postgres


@pytest.fixture
def app_role(require_postgres: None, db: None) -> Iterator[str]:
    """A role made and granted inside the test's transaction (rolled back with it), then
    assumed for the rest of the transaction, as if the application had connected as it."""
    role = f"rensei_app_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
    call_command("grant_app_role", role)
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
    yield role


def refused(sql: str) -> str:
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as c:
        c.execute(sql)
    return str(caught.value)


def test_the_app_role_cannot_alter_or_disable_the_guards(app_role, org_a):
    row = run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == (app_role,)
    for sql in (
        f"ALTER TABLE {triggers.LEDGER} DISABLE TRIGGER ALL",
        f"ALTER TABLE {triggers.LEDGER} DISABLE TRIGGER billing_costevent_append_only",
        f"ALTER TABLE {triggers.ROLLUP} DISABLE TRIGGER billing_dailycost_guard",
        f"DROP TRIGGER billing_costevent_append_only ON {triggers.LEDGER}",
        "DROP FUNCTION billing_ledger_append_only() CASCADE",
    ):
        assert "must be owner" in refused(sql)
    assert "permission denied" in refused(f"TRUNCATE {triggers.LEDGER} CASCADE")
    assert "append-only" in refused(f"DELETE FROM {triggers.LEDGER} WHERE id = {row.pk}")
    # The owner's maintenance switch is only the owner's.
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL {triggers.MAINTENANCE} = 'on'")
    assert "rollup moves only with the ledger" in refused(
        f"UPDATE {triggers.ROLLUP} SET amount = 0"
    )
    assert CostEvent.objects.filter(pk=row.pk).exists()


def test_the_app_role_does_its_work(app_role, org_a):
    """Rows in, the rollup follows through the trigger, under the role's own rights."""
    run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    run(make_session(org_a), at("2025-03-01 11:00"), at("2025-03-01 11:10"))
    assert CostEvent.objects.count() == 2
    assert DailyCost.objects.get().entries == 2


def test_grant_refuses_an_owner(require_postgres, db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        (owner,) = cursor.fetchone()
    with pytest.raises(CommandError, match="owns nothing"):
        call_command("grant_app_role", owner)
    with pytest.raises(CommandError, match="create it first"):
        call_command("grant_app_role", "no_such_role_here")
