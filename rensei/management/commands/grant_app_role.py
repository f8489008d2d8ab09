"""``manage.py grant_app_role ROLE``: give the application's database role what it needs and
nothing more (PostgreSQL).

Run it as the owner, the role migrations run as, after every ``migrate``. The application
role then reads and writes rows but owns no table, so it cannot ALTER, DISABLE TRIGGER,
DROP or TRUNCATE; the billing guards (billing/triggers.py) hold against it, and their
owner-only maintenance switches do nothing for it. The grants cover every table and
sequence in the schema, and default privileges the ones later migrations create (the
owner's, whoever runs this). The production grant has no TRUNCATE and no sequence UPDATE:
the test runner's flush and ``loaddata``'s sequence reset are the owner's work. The role
itself (``CREATE ROLE rensei_app LOGIN PASSWORD …``) is made by whoever manages the
database's users.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction


class Command(BaseCommand):
    help = "Grant the application's database role row access only (run as the owner)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="the role DATABASE_URL connects as")

    def handle(self, *args: Any, role: str, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("grant_app_role is for PostgreSQL (SQLite has no roles).")
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT app.rolsuper, pg_has_role(app.oid, owner.oid, 'MEMBER'), owner.rolname "
                "FROM pg_roles AS app, pg_roles AS owner WHERE app.rolname = %s AND owner.oid = "
                "(SELECT relowner FROM pg_class WHERE oid = 'billing_costevent'::regclass)",
                [role],
            )
            found = cursor.fetchone()
            if found is None:
                raise CommandError(f"No role {role!r}: create it first (CREATE ROLE … LOGIN).")
            if found[0] or found[1]:
                raise CommandError(
                    f"Role {role!r} is a superuser or owns the tables: the application must "
                    "connect as a role that owns nothing."
                )
            name = connection.ops.quote_name(role)
            database = connection.ops.quote_name(connection.settings_dict["NAME"])
            # For the tables the owner creates later, whoever runs this (a superuser too).
            later = (
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {connection.ops.quote_name(found[2])} "
                "IN SCHEMA public GRANT"
            )
            for sql in (
                f"GRANT CONNECT ON DATABASE {database} TO {name}",
                f"GRANT USAGE ON SCHEMA public TO {name}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name}",
                f"{later} SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name}",
                f"{later} USAGE, SELECT ON SEQUENCES TO {name}",
            ):
                cursor.execute(sql)
        self.stdout.write(f"Granted row access to {role}; it owns nothing.")
