"""API tokens: created and shown once, stored as a hash, authenticated, revoked."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from rensei.models import ApiToken, AuditEvent, Channel
from rensei.tokens import authenticate, create_token, revoke
from tests.integrations.test_canary import _every_table_as_text

PAGE = "/settings/api-tokens/"
NEW = "/settings/api-tokens/new/"
TOKEN_RE = re.compile(r"rsn_[a-z0-9]{8}_[A-Za-z0-9_\-]{20,}")


def test_create_stores_only_a_hash(org_a, alice):  # type: ignore[no-untyped-def]
    token, plaintext = create_token(org_a, "  dispatcher  ", alice, Channel.WEB)
    assert TOKEN_RE.fullmatch(plaintext)
    assert token.name == "dispatcher" and plaintext.startswith(token.prefix + "_")
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    secret_part = plaintext.split("_", 2)[2]
    everything = _every_table_as_text()
    assert plaintext not in everything and secret_part not in everything
    event = AuditEvent.objects.get(action="token.created")
    assert event.actor_label == "alice" and token.prefix in event.target
    assert secret_part not in repr(event.detail) + event.target


def test_authenticate_finds_live_tokens_only(org_a, org_b, alice):  # type: ignore[no-untyped-def]
    token, plaintext = create_token(org_a, "dispatcher", alice, Channel.WEB)
    found = authenticate(f"Bearer {plaintext}")
    assert found is not None and found.pk == token.pk and found.org == org_a
    assert authenticate(f"bearer   {plaintext}  ") is not None  # scheme is case-insensitive
    for header in [
        "",
        plaintext,  # no scheme
        f"Basic {plaintext}",
        "Bearer",
        "Bearer ",
        f"Bearer {plaintext}x",  # unknown
        f"Bearer {plaintext[:-1]}",
        "Bearer rsn_",
        "Bearer " + "rsn_" + "a" * 5000,
        "Bearer not-a-rensei-token",
    ]:
        assert authenticate(header) is None, header
    assert revoke(token, alice, Channel.WEB) is True
    assert authenticate(f"Bearer {plaintext}") is None
    assert revoke(token, alice, Channel.WEB) is False  # twice is a no-op
    assert AuditEvent.objects.filter(action="token.revoked").count() == 1


def test_last_used_is_written_at_most_once_a_minute(org_a, alice, time_machine):  # type: ignore[no-untyped-def]
    time_machine.move_to("2026-11-27 10:00:00Z", tick=False)
    token, plaintext = create_token(org_a, "dispatcher", alice, Channel.WEB)
    assert authenticate(f"Bearer {plaintext}") is not None
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    time_machine.move_to("2026-11-27 10:00:30Z", tick=False)
    with CaptureQueriesContext(connection) as queries:
        assert authenticate(f"Bearer {plaintext}") is not None
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    time_machine.move_to("2026-11-27 10:01:30Z", tick=False)
    assert authenticate(f"Bearer {plaintext}") is not None
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first + timedelta(seconds=90)


def test_command_prints_a_working_token(org_a):  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "--org", "org-a", "--name", "ci", stdout=out, stderr=err)
    plaintext = out.getvalue().strip()
    assert TOKEN_RE.fullmatch(plaintext)
    found = authenticate(f"Bearer {plaintext}")
    assert found is not None and found.org == org_a and found.name == "ci"
    assert "not shown again" in err.getvalue()
    event = AuditEvent.objects.get(action="token.created")
    assert event.channel == "cli" and event.actor is None


def test_command_refuses_bad_input(org_a):  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="No organisation"):
        call_command("create_api_token", "--org", "nope", "--name", "ci", stdout=io.StringIO())
    with pytest.raises(CommandError, match="name"):
        call_command("create_api_token", "--org", "org-a", "--name", "  ", stdout=io.StringIO())
    assert not ApiToken.objects.exists()


def test_page_shows_the_token_once(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    assert "No API tokens yet." in c.get(PAGE).content.decode()
    resp = c.post(NEW, {"name": "dispatcher (prod)", "scopes": ["sessions:read", "sessions:write"]})
    assert resp.status_code == 200
    assert "no-store" in resp["Cache-Control"]
    html = resp.content.decode()
    (plaintext,) = set(TOKEN_RE.findall(html))
    assert "shown only this once" in html and "Copy" in html
    token = ApiToken.objects.get()
    assert authenticate(f"Bearer {plaintext}") == token
    later = c.get(PAGE).content.decode()
    assert plaintext not in later and not TOKEN_RE.search(later)
    assert "dispatcher (prod)" in later and f"{token.prefix}…" in later
    assert " UTC by alice" in later and "Active" in later


def test_htmx_create_renders_the_panel(client_as, alice):  # type: ignore[no-untyped-def]
    resp = client_as(alice).htmx(
        "post", NEW, {"name": "ci", "scopes": ["sessions:read", "sessions:write"]}
    )
    body = resp.content.decode()
    assert resp.status_code == 200 and "<html" not in body and 'id="tokens-panel"' in body
    assert TOKEN_RE.search(body)


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "Give the token a name"), ("   ", "Give the token a name"), ("n" * 101, "too long")],
)
def test_bad_names_get_form_errors(client_as, alice, name, message):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    plain = c.post(NEW, {"name": name, "scopes": ["sessions:read", "sessions:write"]})
    assert plain.status_code == 400 and message in plain.content.decode()
    partial = c.htmx("post", NEW, {"name": name, "scopes": ["sessions:read", "sessions:write"]})
    assert partial.status_code == 200 and message in partial.content.decode()
    assert not TOKEN_RE.search(plain.content.decode() + partial.content.decode())
    assert not ApiToken.objects.exists() and not AuditEvent.objects.exists()


def test_revoke_confirms_then_keeps_the_token_listed(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    token, plaintext = create_token(org_a, "old dispatcher", alice, Channel.WEB)
    url = f"/settings/api-tokens/{token.pk}/revoke/"
    c = client_as(alice)
    assert 'hx-confirm="Revoke “old dispatcher”' in c.get(PAGE).content.decode()
    confirm = c.get(url)
    assert confirm.status_code == 200 and "Revoke token" in confirm.content.decode()
    assert authenticate(f"Bearer {plaintext}") is not None  # asking changes nothing
    assert c.post(url)["Location"] == PAGE
    assert authenticate(f"Bearer {plaintext}") is None
    html = c.get(PAGE).content.decode()
    assert "old dispatcher" in html and "Revoked" in html and "revoked." in html
    assert c.get(url)["Location"] == PAGE  # nothing left to confirm
    event = AuditEvent.objects.get(action="token.revoked")
    assert event.channel == "web" and event.actor_label == "alice"


def test_htmx_revoke_redirects_the_client(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    token, _ = create_token(org_a, "ci", alice, Channel.WEB)
    resp = client_as(alice).htmx("post", f"/settings/api-tokens/{token.pk}/revoke/")
    assert resp["HX-Redirect"] == PAGE
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_list_query_count_is_flat_and_paginated(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    create_token(org_a, "first", alice, Channel.WEB)
    c.get(PAGE)  # the first request also stores the active org in the session
    with CaptureQueriesContext(connection) as few:
        c.get(PAGE)
    for i in range(40):
        token, _ = create_token(org_a, f"token {i:02d}", alice, Channel.WEB)
        if i % 2:
            revoke(token, alice, Channel.WEB)
    with CaptureQueriesContext(connection) as many:
        html = c.get(PAGE).content.decode()
    assert len(many.captured_queries) == len(few.captured_queries)
    assert "Page 1 of 2" in html
    assert "first" in c.get(PAGE + "?page=2").content.decode()
    by_name = c.get(PAGE + "?sort=name").content.decode()
    assert by_name.index("first") < by_name.index("token 00")
    assert 'href="/settings/api-tokens/?sort=name&amp;page=2"' in by_name
    assert c.get(PAGE + "?sort=bogus&page=zzz").status_code == 200


def test_never_used_tokens_sort_last(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    _, used = create_token(org_a, "busy robot", alice, Channel.WEB)
    create_token(org_a, "idle robot", alice, Channel.WEB)
    authenticate(f"Bearer {used}")
    c = client_as(alice)
    for sort in ("last_used", "-last_used"):
        html = c.get(f"{PAGE}?sort={sort}").content.decode()
        assert html.index("busy robot") < html.index("idle robot"), sort


def test_new_tokens_default_to_read_and_write(org_a):  # type: ignore[no-untyped-def]
    token, _ = create_token(org_a, "ci", None, Channel.CLI)
    assert token.scopes == ["sessions:read", "sessions:write"] and token.expires_on is None


def test_command_takes_scopes_and_expiry(org_a):  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_token",
        *("--org", "org-a", "--name", "runner"),
        *("--scope", "sessions:exec", "--scope", "sessions:read"),
        *("--expires", "2027-06-30"),
        stdout=out,
        stderr=err,
    )
    token = ApiToken.objects.get()
    assert token.scopes == ["sessions:read", "sessions:exec"]
    assert str(token.expires_on) == "2027-06-30"
    assert "sessions:read, sessions:exec" in err.getvalue() and "2027-06-30" in err.getvalue()
    for bad, message in (
        (["--scope", "sessions:root"], "Unknown scope"),
        (["--expires", "31/01/2099"], "YYYY-MM-DD"),
        (["--expires", "2000-01-01"], "past"),
    ):
        with pytest.raises(CommandError, match=message):
            call_command(
                "create_api_token", "--org", "org-a", "--name", "x", *bad, stdout=io.StringIO()
            )
    assert ApiToken.objects.count() == 1


def test_page_picks_and_shows_scopes_and_expiry(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    form = c.get(PAGE).content.decode()
    assert 'value="sessions:read"' in form and 'value="sessions:exec"' in form
    # Read and write are ticked by default; exec is opt-in.
    assert re.search(r'value="sessions:read"[^>]*checked', form)
    assert not re.search(r'value="sessions:exec"[^>]*checked', form)
    resp = c.post(NEW, {"name": "runner", "scopes": ["sessions:exec"], "expires_on": "2027-06-30"})
    assert resp.status_code == 200
    token = ApiToken.objects.get()
    assert token.scopes == ["sessions:exec"] and str(token.expires_on) == "2027-06-30"
    page = c.get(PAGE).content.decode()
    assert '<code class="d-block">sessions:exec</code>' in page
    assert "after 2027-06-30 UTC" in page and "never" in page  # never used
    assert "before scopes existed" not in page
    refused = c.post(NEW, {"name": "none", "expires_on": "2000-01-01"})
    body = refused.content.decode()
    assert refused.status_code == 400
    assert "Choose at least one scope." in body and "cannot be in the past" in body
    assert ApiToken.objects.count() == 1


def test_tokens_from_before_scopes_have_every_scope_and_a_notice(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    token, _ = create_token(org_a, "old", None, Channel.CLI)
    ApiToken.objects.filter(pk=token.pk).update(scopes=[])
    executor = MigrationExecutor(connection)
    migration = executor.loader.get_migration("rensei", "0006_api_token_scopes_and_expiry")
    run = next(op for op in migration.operations if hasattr(op, "code"))
    run.code(executor.loader.project_state(("rensei", migration.name)).apps, None)
    token.refresh_from_db()
    assert token.scopes == ["sessions:read", "sessions:write", "sessions:exec"]
    assert token.predates_scopes
    page = client_as(alice).get(PAGE).content.decode()
    assert (
        "Tokens made before scopes existed have every scope; narrow them by making new ones" in page
    )
