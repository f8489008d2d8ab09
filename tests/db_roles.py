"""The suite on PostgreSQL as the application's restricted role, the way production runs.

With ``DATABASE_OWNER_URL`` naming the owner beside ``DATABASE_URL``'s role (CI sets both;
tests/settings.py reads them into ``TEST_DATABASE_OWNER``):

- the owner creates the test database, migrates it, runs ``manage.py grant_app_role`` for
  ``DATABASE_URL``'s role (as a deploy does) and drops the database at the end;
- everything else connects as the application's role, which owns nothing: the tests, the
  live server's threads, and the workers, beats and commands the tests start (tests/worker.py
  hands them the test database's URL with this role in it);
- the test runner's flush after a transactional test runs as the owner, on a connection of
  its own. It TRUNCATEs every table, which only the owner may do past the billing guards
  (billing/triggers.py). That is the runner's housekeeping, not the application's, so the
  application's role gets no TRUNCATE for it, and the role the tests prove is exactly the
  one production grants;
- a test that must act as the owner (prove a guard holds even for the owner, write past the
  guards, run a maintenance command such as ``loaddata``, which resets id sequences) asks for
  the ``db_owner`` fixture, which the conftest sets up before the test's transaction opens.

Without an owner (SQLite, or a developer whose ``DATABASE_URL`` is the owner) all of this
does nothing: one role does everything, as before.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection

CREDENTIALS = ("USER", "PASSWORD", "HOST", "PORT")


def owner() -> dict[str, Any] | None:
    """Who the owner connects as, when the suite runs as the application's role."""
    found: dict[str, Any] | None = getattr(settings, "TEST_DATABASE_OWNER", None)
    return found


def connect_as(credentials: dict[str, Any]) -> dict[str, Any]:
    """Point the default connection at ``credentials`` (from its next connect) and return the
    ones it had. Closes the current connection, so never inside a transaction."""
    if connection.in_atomic_block:
        raise RuntimeError("the database role cannot change inside a transaction")
    settings_dict = connection.settings_dict
    previous = {key: settings_dict.get(key) for key in CREDENTIALS}
    connection.close()
    settings_dict.update(credentials)
    return previous


def grant_the_app_role(app_role: str) -> None:
    """As the owner: what a deploy runs after ``migrate``."""
    call_command("grant_app_role", app_role, stdout=io.StringIO())


@contextmanager
def owner_flushes(credentials: dict[str, Any]) -> Iterator[None]:
    """While the block runs, the test runner's flush (``execute_sql_flush``, which
    TransactionTestCase's ``flush`` calls) goes through the owner's own connection to the
    test database, with the test settings' ``rensei.allow_truncate``."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(ops: DatabaseOperations, sql_list: list[str]) -> None:
        if ops.connection.alias != DEFAULT_DB_ALIAS:
            original(ops, sql_list)
            return
        as_owner = ops.connection.copy()
        as_owner.settings_dict.update(credentials)
        try:
            as_owner.ensure_connection()
            as_owner.set_autocommit(False)
            with as_owner.cursor() as cursor:
                for sql in sql_list:
                    cursor.execute(sql)
            as_owner.commit()
        finally:
            as_owner.close()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
        yield
