"""The application's database role (``manage.py grant_app_role``) works with rows and cannot
touch the guards: no ALTER/DISABLE TRIGGER, no TRUNCATE, no owner maintenance switch.

CI runs the whole suite as that role (tests/db_roles.py), so there the proofs run on the very
connection every other test uses; a developer whose DATABASE_URL is the owner gets a role
made and granted inside the test's transaction instead."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import environ
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from billing import triggers
from billing.models import CostEvent, DailyCost
from tests import db_roles
from tests.billing.helpers import at, make_session, run
from tests.services import IN_CI

pytestmark = pytest.mark.postgres


def current_user() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        (user,) = cursor.fetchone()
    return str(user)


def table_owner() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
            [triggers.LEDGER],
        )
        (owner,) = cursor.fetchone()
    return str(owner)


@pytest.fixture
def app_role(require_postgres: None, db: None) -> Iterator[str]:
    """The application's role: the suite's own connection when it runs as that role (CI);
    otherwise a role made and granted inside the test's transaction (rolled back with it),
    then assumed for the rest of the transaction, as if the application had connected as it."""
    if db_roles.owner() is not None:
        yield current_user()
        return
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
    assert current_user() == app_role != table_owner()
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
    with pytest.raises(CommandError, match="owns nothing"):
        call_command("grant_app_role", table_owner())
    with pytest.raises(CommandError, match="create it first"):
        call_command("grant_app_role", "no_such_role_here")


def test_ci_runs_the_suite_as_the_app_role(require_postgres, db):
    """In CI every test connects as a role that owns nothing and may not make roles or
    databases; the owner made the test database. Outside CI, with DATABASE_URL
    the owner, the suite runs as the owner."""
    if not (IN_CI or db_roles.owner()):
        assert current_user() == table_owner()
        return
    owner = db_roles.owner()
    assert owner is not None, "CI sets DATABASE_OWNER_URL beside DATABASE_URL"
    user = current_user()
    assert user == environ.Env.db_url_config(os.environ["DATABASE_URL"])["USER"]
    assert user != table_owner() == owner["USER"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
        assert cursor.fetchone() == (owner["USER"],)
        cursor.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
            "WHERE rolname = current_user"
        )
        assert cursor.fetchone() == (False, False, False, False)
        cursor.execute(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)"
            " + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)"
            " + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)"
            " + (SELECT count(*) FROM pg_database WHERE datdba = r.oid)"
            " FROM pg_roles r WHERE r.rolname = current_user"
        )
        assert cursor.fetchone() == (0,)
    assert "must be owner" in refused(f"ALTER TABLE {triggers.LEDGER} DISABLE TRIGGER ALL")


@pytest.mark.django_db(transaction=True)
def test_the_test_runners_flush_is_the_owners(require_postgres, org_a):
    """The application's role may not TRUNCATE, yet the flush after a transactional test
    empties every table, the guarded ledger and rollup included: the owner runs it."""
    run(make_session(org_a), at("2025-03-01 10:00"), at("2025-03-01 10:10"))
    assert CostEvent.objects.count() == 1 and DailyCost.objects.count() == 1
    call_command("flush", interactive=False, verbosity=0)
    assert not CostEvent.objects.exists() and not DailyCost.objects.exists()
    assert current_user() == connection.settings_dict["USER"]
