"""Database guards for month close (see ``billing.closing``), beside the ledger's own
(``billing/triggers.py``), on PostgreSQL and SQLite alike:

- ``billing_costevent_closed_month``: BEFORE INSERT on the ledger, raises when the row's
  usage month (the rollup's usage day, truncated to the month) has a standing close for the
  org. A late row must be dated in the first open month (``billing.closing.ledger_date``).
  With the ledger's own UPDATE/DELETE refusal and the rollup guard, no row of a closed month
  can change or appear, so its totals stay what the close froze.
- ``billing_monthclose_guard``: BEFORE UPDATE (and on PostgreSQL DELETE) of a close: the
  frozen totals, the month, the org and who closed it never change; the only change allowed
  is the one-way reopen, with a non-blank reason; a reopened close is history and never
  changes again. SQLite has no DELETE guard (the test runner flushes tables with DELETE),
  as for the ledger.

Migration 0006 installs them; ``BillingConfig`` re-installs them on SQLite after every
``migrate`` (SQLite drops a table's triggers when a migration rebuilds it).
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from billing.triggers import LEDGER, _sqlite_day

CLOSES = "billing_monthclose"
FROZEN = (
    "org_id",
    "month",
    "amount",
    "quantity_seconds",
    "entries",
    "currency",
    "closed_at",
    "closed_by_id",
)


def _row(prefix: str) -> str:
    return "(" + ", ".join(f"{prefix}.{c}" for c in FROZEN) + ")"


POSTGRES_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION billing_ledger_closed_month() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        m date := date_trunc('month',
            (NEW.occurred_at AT TIME ZONE 'UTC') - interval '1 microsecond')::date;
    BEGIN
        IF EXISTS (SELECT 1 FROM {CLOSES} WHERE org_id = NEW.org_id AND month = m
                   AND reopened_at IS NULL) THEN
            RAISE EXCEPTION 'month % is closed for org %: date the row in the first open month',
                to_char(m, 'YYYY-MM'), NEW.org_id USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    f"DROP TRIGGER IF EXISTS billing_costevent_closed_month ON {LEDGER}",
    f"""
    CREATE TRIGGER billing_costevent_closed_month BEFORE INSERT ON {LEDGER}
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_closed_month()
    """,
    f"""
    CREATE OR REPLACE FUNCTION billing_monthclose_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'a month close is never deleted; an admin reopens it with a reason'
                USING ERRCODE = 'restrict_violation';
        END IF;
        IF OLD.reopened_at IS NOT NULL THEN
            RAISE EXCEPTION 'month close % was reopened: it is history and never changes',
                OLD.id USING ERRCODE = 'restrict_violation';
        END IF;
        IF {_row("NEW")} IS DISTINCT FROM {_row("OLD")} THEN
            RAISE EXCEPTION 'a closed month''s totals are frozen: UPDATE refused'
                USING ERRCODE = 'restrict_violation';
        END IF;
        IF NEW.reopened_at IS NULL OR btrim(NEW.reopen_reason) = '' THEN
            RAISE EXCEPTION 'a closed month is reopened only with a reason'
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    f"DROP TRIGGER IF EXISTS billing_monthclose_guard ON {CLOSES}",
    f"""
    CREATE TRIGGER billing_monthclose_guard BEFORE UPDATE OR DELETE ON {CLOSES}
    FOR EACH ROW EXECUTE FUNCTION billing_monthclose_guard()
    """,
]

POSTGRES_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS billing_costevent_closed_month ON {LEDGER}",
    f"DROP TRIGGER IF EXISTS billing_monthclose_guard ON {CLOSES}",
    "DROP FUNCTION IF EXISTS billing_ledger_closed_month()",
    "DROP FUNCTION IF EXISTS billing_monthclose_guard()",
]

SQLITE_TRIGGERS = ("billing_costevent_closed_month", "billing_monthclose_guard")
_changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FROZEN)

SQLITE_INSTALL = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS),
    f"""
    CREATE TRIGGER billing_costevent_closed_month BEFORE INSERT ON {LEDGER}
    WHEN EXISTS (SELECT 1 FROM {CLOSES} WHERE org_id = NEW.org_id AND reopened_at IS NULL
                 AND month = strftime('%Y-%m-01', {_sqlite_day("NEW")}))
    BEGIN
        SELECT RAISE(ABORT, 'the month is closed: date the row in the first open month');
    END
    """,
    f"""
    CREATE TRIGGER billing_monthclose_guard BEFORE UPDATE ON {CLOSES}
    WHEN OLD.reopened_at IS NOT NULL OR {_changed}
         OR NEW.reopened_at IS NULL OR trim(NEW.reopen_reason) = ''
    BEGIN
        SELECT RAISE(ABORT,
            'a closed month''s totals are frozen; it is only reopened, once, with a reason');
    END
    """,
]

SQLITE_UNINSTALL = [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(connection: BaseDatabaseWrapper) -> bool:
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
