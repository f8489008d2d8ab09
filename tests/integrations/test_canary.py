"""A key entered in the browser is never seen again: not in any page, the database, logs,
task arguments, audit rows or a data dump. Only its last four characters are shown."""

from __future__ import annotations

import io
import logging
import secrets
from typing import Any

from celery.app.task import Task
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection, connections

from rensei.credentials import resolve_credential
from rensei.models import AuditEvent, Credential


def _every_table_as_text() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")
            chunks.append(repr(cursor.fetchall()))
    return "\n".join(chunks)


def test_canary_key_appears_nowhere(  # type: ignore[no-untyped-def]
    client_as, alice, staff, org_a, e2b_emulator, e2b_at, caplog, monkeypatch
):
    e2b_at(e2b_emulator)
    canary = f"e2b_CANARY_{secrets.token_hex(12)}"
    last_four = canary[-4:]

    # Every logger at DEBUG, SQL included, for the whole journey.
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setattr(connections["default"], "force_debug_cursor", True)
    enqueued: list[Any] = []

    def record_apply_async(self: Task, args: Any = None, kwargs: Any = None, **options: Any):  # type: ignore[no-untyped-def]
        enqueued.append((self.name, args, kwargs, options))

    monkeypatch.setattr(Task, "apply_async", record_apply_async)

    c = client_as(alice)
    assert c.htmx("post", "/settings/integrations/e2b/key/", {"secret": canary}).status_code == 200
    test = c.htmx("post", "/settings/integrations/e2b/test/")
    assert "Connection OK" in test.content.decode()
    assert resolve_credential(org_a).secret == canary  # it really was stored

    pages = {
        "integrations": c.get("/settings/integrations/"),
        "api tokens": c.get("/settings/api-tokens/"),
        "dashboard": c.get("/"),
        "test result": test,
    }
    admin = client_as(staff)
    row = Credential.objects.get(org=org_a)
    pages["admin changelist"] = admin.get("/admin/rensei/credential/")
    pages["admin change page"] = admin.get(f"/admin/rensei/credential/{row.pk}/change/")
    pages["admin audit list"] = admin.get("/admin/rensei/auditevent/")
    for name, resp in pages.items():
        assert resp.status_code == 200, name
        assert canary not in resp.content.decode(), f"the key leaked into the {name} page"
    assert f"••••{last_four}" in pages["integrations"].content.decode()
    assert f"••••{last_four}" in pages["admin changelist"].content.decode()

    # The raw columns, and every other table too (sessions decoded: their data is encoded).
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted, last_four FROM rensei_credential")
        stored = cursor.fetchall()
        cursor.execute("SELECT action, target, detail, actor_label FROM rensei_auditevent")
        audit_rows = cursor.fetchall()
    assert stored and canary not in repr(stored) and stored[0][1] == last_four
    assert len(audit_rows) == 2 and canary not in repr(audit_rows)
    assert canary not in _every_table_as_text()
    for session in Session.objects.all():
        assert canary not in repr(session.get_decoded())
    assert canary not in repr(list(AuditEvent.objects.values()))

    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert canary not in dump.getvalue() and '"last_four": "' + last_four in dump.getvalue()

    assert caplog.records, "nothing was logged: the log check would prove nothing"
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    assert canary not in logged
    assert canary not in caplog.text

    assert canary not in repr(enqueued)


def test_error_reports_never_show_the_key(client_as, alice, monkeypatch):  # type: ignore[no-untyped-def]
    """A failure while saving produces an error report (what admins are mailed, what error
    trackers read) with the request's POST data and every frame's locals: none shows it."""
    from django.core.signals import got_request_exception
    from django.views.debug import ExceptionReporter

    from rensei import credentials

    canary = f"e2b_CANARY_{secrets.token_hex(12)}"
    reports: list[str] = []

    def report(sender: Any, request: Any, **kwargs: Any) -> None:
        import sys

        reporter = ExceptionReporter(request, *sys.exc_info())
        reports.append(reporter.get_traceback_text() + reporter.get_traceback_html())

    def broken_encrypt(plaintext: str) -> str:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(credentials, "encrypt", broken_encrypt)
    got_request_exception.connect(report)
    try:
        c = client_as(alice)
        c.raise_request_exception = False
        resp = c.post("/settings/integrations/e2b/key/", {"secret": canary})
    finally:
        got_request_exception.disconnect(report)
    assert resp.status_code == 500
    assert canary not in resp.content.decode()
    assert reports and "the disk is full" in reports[0]
    assert "secret" in reports[0]  # the POST field is listed, its value cleansed
    assert canary not in reports[0]
