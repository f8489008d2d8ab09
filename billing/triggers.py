"""Database triggers that keep the ledger append-only, the daily rollup exact and the rate
cards in effect frozen.

PostgreSQL
    - ``billing_costevent_append_only``: BEFORE UPDATE OR DELETE, raises.
    - ``billing_costevent_rollup``: AFTER INSERT, adds the row to ``billing_dailycost`` with
      an upsert, in the inserting transaction.
    - ``billing_costevent_no_double_reversal``: BEFORE INSERT of a reversing row, raises when
      the row it reverses is itself a reversal (reversed once only: the OneToOne's unique).
    - ``billing_dailycost_guard``: BEFORE INSERT OR UPDATE OR DELETE on the rollup, raises
      unless the write comes from inside a trigger (``pg_trigger_depth() > 1``: the rollup
      trigger), so the rollup can only move with the ledger.
    - ``billing_ratecard_frozen``: BEFORE UPDATE of a card whose ``effective_from`` has
      passed, raises. A future card may still be corrected.
    - ``<table>_no_truncate``: statement-level BEFORE TRUNCATE on the ledger, the rollup and
      the rate cards (row triggers never see a TRUNCATE), raises.

    Two switches for the table owner (the migrations' role) only: ``rensei.ledger_maintenance``
    lets a rollup rebuild past the rollup guard, ``rensei.allow_truncate`` lets a TRUNCATE
    through (the test settings set it for the test runner's flush). The application's role
    owns nothing, so either setting does nothing for it; the owner could drop the triggers
    anyway, so the switches hide no power it did not have.

SQLite (the embedded default)
    - the same rollup, reversal and rate card guards and an UPDATE guard on the ledger. No
      DELETE guard: the test runner flushes tables with DELETE. Instead an AFTER DELETE
      trigger takes the row back out of the rollup, so even a raw delete cannot leave the
      rollup stale. SQLite has no TRUNCATE and no trigger depth: the rollup guard is
      PostgreSQL's. The model, its QuerySet and the admin refuse deletes at the application
      level on every backend; ``manage.py check_ledger`` proves rollup = ledger on both.

The usage day computed here must match ``billing.models.usage_day``: a row closed at exactly
00:00:00 UTC belongs to the day that just ended.

Migrations 0004 and 0005 install these. SQLite drops a table's triggers whenever Django
rebuilds the table in a later migration, so ``BillingConfig`` re-installs them after every
``migrate`` (idempotent). A future migration that must UPDATE ledger rows on PostgreSQL (a
data fix, a NOT NULL backfill) has to disable the guard explicitly around its change.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

LEDGER = "billing_costevent"
ROLLUP = "billing_dailycost"
RATE_CARD = "billing_ratecard"
CONFLICT_TARGET = "(org_id, day, COALESCE(issue_id, 0), COALESCE(pool_id, 0), provider)"
MAINTENANCE = "rensei.ledger_maintenance"  # the owner rebuilds the rollup
ALLOW_TRUNCATE = "rensei.allow_truncate"  # the owner empties the tables (the test flush)
NO_TRUNCATE = tuple(f"{table}_no_truncate" for table in (LEDGER, ROLLUP, RATE_CARD))

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


# The guards added by migration 0005: no double reversal, the rollup written only by the
# ledger's trigger, rate cards in effect frozen, no TRUNCATE.
POSTGRES_GUARDS = [
    f"""
    CREATE OR REPLACE FUNCTION billing_owner_allows(switch text) RETURNS boolean
    LANGUAGE sql STABLE AS $$
        SELECT COALESCE(current_setting(switch, true), '') = 'on'
           AND pg_has_role(current_user,
                           (SELECT relowner FROM pg_class WHERE oid = '{LEDGER}'::regclass),
                           'MEMBER')
    $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION billing_refuse_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF billing_owner_allows('{ALLOW_TRUNCATE}') THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'TRUNCATE of % refused: billing rows are never wiped', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    *(
        sql
        for table in (LEDGER, ROLLUP, RATE_CARD)
        for sql in (
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"""
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_truncate()
            """,
        )
    ),
    f"""
    CREATE OR REPLACE FUNCTION billing_rollup_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        -- Depth 1 is a statement from outside; the ledger's rollup trigger writes at depth 2.
        IF pg_trigger_depth() > 1 OR billing_owner_allows('{MAINTENANCE}') THEN
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'the daily rollup moves only with the ledger: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    f"DROP TRIGGER IF EXISTS billing_dailycost_guard ON {ROLLUP}",
    f"""
    CREATE TRIGGER billing_dailycost_guard BEFORE INSERT OR UPDATE OR DELETE ON {ROLLUP}
    FOR EACH ROW EXECUTE FUNCTION billing_rollup_guard()
    """,
    """
    CREATE OR REPLACE FUNCTION billing_ratecard_frozen() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'rate card % is in effect since %: it is never changed; add a new card',
            OLD.id, OLD.effective_from USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    f"DROP TRIGGER IF EXISTS billing_ratecard_frozen ON {RATE_CARD}",
    f"""
    CREATE TRIGGER billing_ratecard_frozen BEFORE UPDATE ON {RATE_CARD}
    FOR EACH ROW WHEN (OLD.effective_from <= now()) EXECUTE FUNCTION billing_ratecard_frozen()
    """,
    f"""
    CREATE OR REPLACE FUNCTION billing_no_double_reversal() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM {LEDGER} WHERE id = NEW.reverses_id
                   AND reverses_id IS NOT NULL) THEN
            RAISE EXCEPTION 'ledger entry % is a reversal: a reversal is never reversed',
                NEW.reverses_id USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    f"DROP TRIGGER IF EXISTS billing_costevent_no_double_reversal ON {LEDGER}",
    f"""
    CREATE TRIGGER billing_costevent_no_double_reversal BEFORE INSERT ON {LEDGER}
    FOR EACH ROW WHEN (NEW.reverses_id IS NOT NULL)
    EXECUTE FUNCTION billing_no_double_reversal()
    """,
]

POSTGRES_UNINSTALL_GUARDS = [
    *(
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}"
        for table in (LEDGER, ROLLUP, RATE_CARD)
    ),
    f"DROP TRIGGER IF EXISTS billing_dailycost_guard ON {ROLLUP}",
    f"DROP TRIGGER IF EXISTS billing_ratecard_frozen ON {RATE_CARD}",
    f"DROP TRIGGER IF EXISTS billing_costevent_no_double_reversal ON {LEDGER}",
    "DROP FUNCTION IF EXISTS billing_refuse_truncate()",
    "DROP FUNCTION IF EXISTS billing_rollup_guard()",
    "DROP FUNCTION IF EXISTS billing_ratecard_frozen()",
    "DROP FUNCTION IF EXISTS billing_no_double_reversal()",
    "DROP FUNCTION IF EXISTS billing_owner_allows(text)",
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
    "billing_costevent_no_double_reversal",
)
SQLITE_GUARDS = ("billing_ratecard_frozen",)

SQLITE_INSTALL = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in (*SQLITE_TRIGGERS, *SQLITE_GUARDS)),
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
    f"""
    CREATE TRIGGER billing_costevent_no_double_reversal BEFORE INSERT ON {LEDGER}
    WHEN NEW.reverses_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM {LEDGER} WHERE id = NEW.reverses_id AND reverses_id IS NOT NULL)
    BEGIN
        SELECT RAISE(ABORT, 'a reversal is never reversed');
    END
    """,
    # Django stores 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC: text order is time order.
    f"""
    CREATE TRIGGER billing_ratecard_frozen BEFORE UPDATE ON {RATE_CARD}
    WHEN OLD.effective_from <= strftime('%Y-%m-%d %H:%M:%f', 'now')
    BEGIN
        SELECT RAISE(ABORT, 'a rate card in effect is never changed; add a new card');
    END
    """,
]

SQLITE_UNINSTALL = [f"DROP TRIGGER IF EXISTS {name}" for name in (*SQLITE_TRIGGERS, *SQLITE_GUARDS)]

# The ledger summed the way the rollup trigger sums it: the rebuild and ``check_ledger``.
SUMS = {
    "postgresql": f"""
        SELECT org_id, ((occurred_at AT TIME ZONE 'UTC') - interval '1 microsecond')::date,
               issue_id, pool_id, provider, SUM(amount), SUM(quantity_seconds),
               SUM(quantity_seconds * vcpu), COUNT(*)
        FROM {LEDGER} GROUP BY 1, 2, 3, 4, 5
        """,
    "sqlite": f"""
        SELECT org_id, {_sqlite_day(LEDGER)}, issue_id, pool_id, provider, SUM(amount),
               SUM(quantity_seconds), SUM(quantity_seconds * vcpu), COUNT(*)
        FROM {LEDGER} GROUP BY 1, 2, 3, 4, 5
        """,
}
ROLLUP_COLUMNS = (
    "org_id, day, issue_id, pool_id, provider, amount, quantity_seconds, vcpu_seconds, entries"
)

# Rebuild the rollup from the ledger (install on a database that already has rows). On
# PostgreSQL the owner's maintenance switch lets the rebuild past the rollup guard.
REBUILD = {
    vendor: [
        *([f"SELECT set_config('{MAINTENANCE}', 'on', true)"] if vendor == "postgresql" else []),
        f"DELETE FROM {ROLLUP}",
        f"INSERT INTO {ROLLUP} ({ROLLUP_COLUMNS}) {sums}",
        *([f"SELECT set_config('{MAINTENANCE}', 'off', true)"] if vendor == "postgresql" else []),
    ]
    for vendor, sums in SUMS.items()
}


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(connection: BaseDatabaseWrapper) -> bool:
    """Create (or replace) the triggers for this backend. False for an unknown backend."""
    statements = {
        "postgresql": [*POSTGRES_INSTALL, *POSTGRES_GUARDS],
        "sqlite": SQLITE_INSTALL,
    }.get(connection.vendor)
    if statements is None:
        return False
    _run(connection, statements)
    return True


def uninstall(connection: BaseDatabaseWrapper) -> None:
    statements = {
        "postgresql": [*POSTGRES_UNINSTALL_GUARDS, *POSTGRES_UNINSTALL],
        "sqlite": SQLITE_UNINSTALL,
    }.get(connection.vendor, [])
    _run(connection, statements)


def uninstall_guards(connection: BaseDatabaseWrapper) -> None:
    """Migration 0005's reverse: the guards go, the append-only ledger and rollup stay."""
    statements = {
        "postgresql": POSTGRES_UNINSTALL_GUARDS,
        "sqlite": [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_GUARDS]
        + ["DROP TRIGGER IF EXISTS billing_costevent_no_double_reversal"],
    }.get(connection.vendor, [])
    _run(connection, statements)


def rebuild_rollup(connection: BaseDatabaseWrapper) -> None:
    _run(connection, REBUILD.get(connection.vendor, []))


def installed(connection: BaseDatabaseWrapper, table: str = LEDGER) -> set[str]:
    """Names of the triggers on a billing table (for checks and tests)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [table],
            )
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table]
            )
        else:
            return set()
        return {row[0] for row in cursor.fetchall()}
