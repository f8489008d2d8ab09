"""Rows in bulk for the benchmarks' ledger loader (``bench.seed_costs``): COPY on PostgreSQL,
multi-row INSERTs elsewhere (SQLite, for tests), with ids the loader picks itself so sessions,
intervals and ledger rows can point at each other before any is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, models
from psycopg.adapt import PyFormat, Transformer

from bench.seed_plan import DAY_MS, SeedError, dt_of


def _text(value: Any) -> str:
    """One value in COPY's text format. The strings this command writes are its own
    (keys, reasons, timestamps): plain ASCII without tabs, newlines or backslashes."""
    return "\\N" if value is None else str(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Stamps:
    """Epoch milliseconds → what a writer wants: COPY text on PostgreSQL (formatted by hand,
    several times faster than str(datetime)), aware datetimes elsewhere."""

    def __init__(self, text: bool) -> None:
        self.text = text
        self._days: dict[int, str] = {}

    def __call__(self, ms: int) -> Any:
        if not self.text:
            return dt_of(ms)
        day, rest = divmod(ms, DAY_MS)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = f"{dt_of(day * DAY_MS):%Y-%m-%d} "
        secs, milli = divmod(rest, 1000)
        mins, secs = divmod(secs, 60)
        hours, mins = divmod(mins, 60)
        return f"{prefix}{hours:02d}:{mins:02d}:{secs:02d}.{milli:03d}+00"


class TableWriter:
    """Writes rows of one model with explicit ids: COPY on PostgreSQL, INSERT elsewhere.

    ``columns`` are attnames given for every row; every other concrete field gets its
    default, computed once (a field with neither is an error, so a new NOT NULL column
    fails loudly here instead of in the middle of a load).
    """

    def __init__(
        self, model: type[models.Model], columns: Sequence[str], *, with_ids: bool = True
    ) -> None:
        fields = {f.attname: f for f in model._meta.concrete_fields}
        self.fields = [fields[name] for name in (["id"] if with_ids else []) + list(columns)]
        constants: list[tuple[models.Field[Any, Any], Any]] = []
        for name, field in fields.items():
            if name == "id" or name in columns:
                continue
            value = field.get_default()
            if value is None and not field.null:
                raise SeedError(
                    f"The loader does not know how to fill {model._meta.db_table}.{field.column}"
                )
            constants.append((field, value))
        self.table = model._meta.db_table
        self.postgres = connection.vendor == "postgresql"
        self.names = [str(f.column) for f in self.fields] + [str(f.column) for f, _ in constants]
        self.tail = tuple(f.get_db_prep_save(v, connection) for f, v in constants)
        self.text_tail = ""
        if self.postgres and constants:
            self.text_tail = "\t" + "\t".join(self._dumped(v) for v in self.tail)
        self._next_id: int | None = None

    def _dumped(self, value: Any) -> str:
        """A constant (JSON and all) in COPY text, dumped by psycopg itself."""
        if value is None:
            return "\\N"
        raw = connection.connection
        dumper = Transformer.from_context(raw).get_dumper(value, PyFormat.TEXT)
        return _escape(bytes(dumper.dump(value) or b"").decode())

    def ids(self, n: int) -> list[int]:
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [self.table, n],
                )
                return [row[0] for row in cursor.fetchall()]
            if self._next_id is None:  # SQLite holds the write lock for the transaction
                cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {self.table}")
                self._next_id = cursor.fetchone()[0] + 1
        first, self._next_id = self._next_id, self._next_id + n
        return list(range(first, first + n))

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        """``rows``: ([id,] *columns) tuples of Python values."""
        if not rows:
            return
        names = ", ".join(connection.ops.quote_name(n) for n in self.names)
        with connection.cursor() as cursor:
            if self.postgres:
                tail = self.text_tail + "\n"
                with cursor.cursor.copy(f"COPY {self.table} ({names}) FROM STDIN") as copy:
                    for start in range(0, len(rows), 10_000):
                        copy.write(
                            "".join(
                                "\t".join(map(_text, row)) + tail
                                for row in rows[start : start + 10_000]
                            )
                        )
                return
            marks = ", ".join(["%s"] * len(self.names))
            prepped = [
                tuple(
                    f.get_db_prep_save(v, connection) for f, v in zip(self.fields, row, strict=True)
                )
                + self.tail
                for row in rows
            ]
            cursor.executemany(f"INSERT INTO {self.table} ({names}) VALUES ({marks})", prepped)


SESSION_COLUMNS = [
    "org_id", "issue_id", "pool_id", "provider", "state", "request_id", "sandbox_id",
    "template", "vcpu", "memory_mb", "attempts", "created_at", "state_changed_at",
    "started_at", "ended_at",
]  # fmt: skip
INTERVAL_COLUMNS = ["session_id", "started_at", "ended_at", "closed_reason"]
EVENT_COLUMNS = [
    "org_id", "session_id", "issue_id", "pool_id", "provider", "kind", "quantity_seconds",
    "vcpu", "memory_mb", "rate_card_id", "amount", "currency", "interval_start",
    "interval_end", "occurred_at", "idempotency_key", "created_at",
]  # fmt: skip
