"""Database triggers that keep the ledger append-only and the daily rollup exact.

PostgreSQL
    - ``billing_costevent_append_only``: BEFORE UPDATE OR DELETE, raises. TRUNCATE (the test
      runner's flush) fires no row trigger, so test isolation still works.
    - ``billing_costevent_rollup``: AFTER INSERT, adds the row to ``billing_dailycost`` with
      an upsert, in the inserting transaction.

SQLite (the embedded default)
    - the same rollup trigger and an UPDATE guard. No DELETE guard: the test runner flushes
      tables with DELETE. Instead an AFTER DELETE trigger takes the row back out of the
      rollup, so even a raw delete cannot leave the rollup stale. The model, its QuerySet
      and the admin refuse deletes at the application level on every backend.

The usage day computed here must match ``billing.models.usage_day``: a row closed at exactly
00:00:00 UTC belongs to the day that just ended.

Migration 0004 installs these. SQLite drops a table's triggers whenever Django rebuilds the
table in a later migration, so ``BillingConfig`` re-installs them after every ``migrate``
(idempotent). A future migration that must UPDATE ledger rows on PostgreSQL (a data fix, a
NOT NULL backfill) has to disable the guard explicitly around its change.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

LEDGER = "billing_costevent"
ROLLUP = "billing_dailycost"
CONFLICT_TARGET = "(org_id, day, COALESCE(issue_id, 0), COALESCE(pool_id, 0), provider)"

POSTGRES_INSTALL = [
    """
    CREATE OR REPLACE FUNCTION billing_ledger_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'billing ledger rows are append-only: % refused; record a reversing row',
            TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    f"DROP TRIGGER IF EXISTS billing_costevent_append_only ON {LEDGER}",
    f"""
    CREATE TRIGGER billing_costevent_append_only BEFORE UPDATE OR DELETE ON {LEDGER}
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only()
    """,
    f"""
    CREATE OR REPLACE FUNCTION billing_costevent_rollup() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {ROLLUP} (org_id, day, issue_id, pool_id, provider,
                              amount, quantity_seconds, vcpu_seconds, entries)
        VALUES (NEW.org_id,
                ((NEW.occurred_at AT TIME ZONE 'UTC') - interval '1 microsecond')::date,
                NEW.issue_id, NEW.pool_id, NEW.provider,
                NEW.amount, NEW.quantity_seconds, NEW.quantity_seconds * NEW.vcpu, 1)
        ON CONFLICT {CONFLICT_TARGET} DO UPDATE SET
            amount = {ROLLUP}.amount + EXCLUDED.amount,
            quantity_seconds = {ROLLUP}.quantity_seconds + EXCLUDED.quantity_seconds,
            vcpu_seconds = {ROLLUP}.vcpu_seconds + EXCLUDED.vcpu_seconds,
            entries = {ROLLUP}.entries + 1;
        RETURN NULL;
    END
    $$
    """,
    f"DROP TRIGGER IF EXISTS billing_costevent_rollup ON {LEDGER}",
    f"""
    CREATE TRIGGER billing_costevent_rollup AFTER INSERT ON {LEDGER}
    FOR EACH ROW EXECUTE FUNCTION billing_costevent_rollup()
    """,
]

POSTGRES_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS billing_costevent_append_only ON {LEDGER}",
    f"DROP TRIGGER IF EXISTS billing_costevent_rollup ON {LEDGER}",
    "DROP FUNCTION IF EXISTS billing_ledger_append_only()",
    "DROP FUNCTION IF EXISTS billing_costevent_rollup()",
]


def _sqlite_day(row: str) -> str:
    # Django stores 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC); exactly midnight → the day before.
    return (
        f"CASE WHEN substr({row}.occurred_at, 12) IN ('00:00:00', '00:00:00.000000') "
        f"THEN date({row}.occurred_at, '-1 day') ELSE date({row}.occurred_at) END"
    )


SQLITE_TRIGGERS = (
    "billing_costevent_no_update",
    "billing_costevent_rollup",
    "billing_costevent_unroll",
)

SQLITE_INSTALL = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS),
    f"""
    CREATE TRIGGER billing_costevent_no_update BEFORE UPDATE ON {LEDGER}
    BEGIN
        SELECT RAISE(ABORT,
            'billing ledger rows are append-only: UPDATE refused; record a reversing row');
    END
    """,
    f"""
    CREATE TRIGGER billing_costevent_rollup AFTER INSERT ON {LEDGER}
    BEGIN
        INSERT INTO {ROLLUP} (org_id, day, issue_id, pool_id, provider,
                              amount, quantity_seconds, vcpu_seconds, entries)
        VALUES (NEW.org_id, {_sqlite_day("NEW")}, NEW.issue_id, NEW.pool_id, NEW.provider,
                NEW.amount, NEW.quantity_seconds, NEW.quantity_seconds * NEW.vcpu, 1)
        ON CONFLICT {CONFLICT_TARGET} DO UPDATE SET
            amount = amount + excluded.amount,
            quantity_seconds = quantity_seconds + excluded.quantity_seconds,
            vcpu_seconds = vcpu_seconds + excluded.vcpu_seconds,
            entries = entries + 1;
    END
    """,
    f"""
    CREATE TRIGGER billing_costevent_unroll AFTER DELETE ON {LEDGER}
    BEGIN
        UPDATE {ROLLUP} SET
            amount = amount - OLD.amount,
            quantity_seconds = quantity_seconds - OLD.quantity_seconds,
            vcpu_seconds = vcpu_seconds - OLD.quantity_seconds * OLD.vcpu,
            entries = entries - 1
        WHERE org_id = OLD.org_id AND day = {_sqlite_day("OLD")}
          AND COALESCE(issue_id, 0) = COALESCE(OLD.issue_id, 0)
          AND COALESCE(pool_id, 0) = COALESCE(OLD.pool_id, 0)
          AND provider = OLD.provider;
    END
    """,
]

SQLITE_UNINSTALL = [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]

# Rebuild the rollup from the ledger (install on a database that already has rows).
REBUILD = {
    "postgresql": [
        f"DELETE FROM {ROLLUP}",
        f"""
        INSERT INTO {ROLLUP} (org_id, day, issue_id, pool_id, provider,
                              amount, quantity_seconds, vcpu_seconds, entries)
        SELECT org_id, ((occurred_at AT TIME ZONE 'UTC') - interval '1 microsecond')::date,
               issue_id, pool_id, provider, SUM(amount), SUM(quantity_seconds),
               SUM(quantity_seconds * vcpu), COUNT(*)
        FROM {LEDGER} GROUP BY 1, 2, 3, 4, 5
        """,
    ],
    "sqlite": [
        f"DELETE FROM {ROLLUP}",
        f"""
        INSERT INTO {ROLLUP} (org_id, day, issue_id, pool_id, provider,
                              amount, quantity_seconds, vcpu_seconds, entries)
        SELECT org_id, {_sqlite_day(LEDGER)}, issue_id, pool_id, provider, SUM(amount),
               SUM(quantity_seconds), SUM(quantity_seconds * vcpu), COUNT(*)
        FROM {LEDGER} GROUP BY 1, 2, 3, 4, 5
        """,
    ],
}


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(connection: BaseDatabaseWrapper) -> bool:
    """Create (or replace) the triggers for this backend. False for an unknown backend."""
    statements = {"postgresql": POSTGRES_INSTALL, "sqlite": SQLITE_INSTALL}.get(connection.vendor)
    if statements is None:
        return False
    _run(connection, statements)
    return True


def uninstall(connection: BaseDatabaseWrapper) -> None:
    statements = {"postgresql": POSTGRES_UNINSTALL, "sqlite": SQLITE_UNINSTALL}.get(
        connection.vendor, []
    )
    _run(connection, statements)


def rebuild_rollup(connection: BaseDatabaseWrapper) -> None:
    _run(connection, REBUILD.get(connection.vendor, []))


def installed(connection: BaseDatabaseWrapper) -> set[str]:
    """Names of the billing triggers present in the database (for checks and tests)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [LEDGER],
            )
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [LEDGER]
            )
        else:
            return set()
        return {row[0] for row in cursor.fetchall()}
