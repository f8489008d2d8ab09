"""Django on a database of its own, for the benchmarks run alone (``python -m bench.b5_…``,
``b6``, ``b8``, ``b9``): a temporary SQLite file, or the PostgreSQL database ``db`` names,
created empty, migrated, and dropped on the way out."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def standalone_database(name: str, db: str) -> Iterator[Any]:
    """Set Django up on it and yield its connection (``name``: the temp file's, e.g. "b5")."""
    tmp = tempfile.mkdtemp(prefix=f"bench-{name}-")
    os.environ["DATABASE_URL"] = db or f"sqlite:///{Path(tmp) / f'{name}.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rensei.settings")
    import django  # here: the database URL above must be set before settings load

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if db:
        _recreate_postgres(db)
    call_command("migrate", verbosity=0)
    try:
        yield connection
    finally:
        if db:
            connection.close()
            _drop_postgres(db)


def _admin_dsn(url: str) -> tuple[str, str]:
    base, _, name = url.rpartition("/")
    return f"{base}/postgres", name


def _recreate_postgres(url: str) -> None:
    import psycopg  # only for a PostgreSQL run

    admin, name = _admin_dsn(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_postgres(url: str) -> None:
    import psycopg

    admin, name = _admin_dsn(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
