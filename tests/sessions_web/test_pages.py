"""The session pages as people see them: dashboard, list, new session."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from rensei.models import AuditEvent, Channel
from sessions.models import Session, SessionState
from tests.factories import CapacityPoolFactory, CredentialFactory
from tests.sessions_web.helpers import text

pytestmark = pytest.mark.django_db


# --- dashboard -----------------------------------------------------------------------------


def test_dashboard_empty_state_gives_next_steps(client_as, alice, settings) -> None:  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = ""
    resp = client_as(alice).get("/")
    assert resp.status_code == 200
    page = text(resp)
    assert "No sessions yet" in page
    html = resp.content.decode()
    assert 'href="/settings/integrations/"' in html
    assert 'href="/settings/execution/capacity/"' in html
    assert 'href="/sessions/new/"' in html


def test_dashboard_empty_state_for_a_member_says_ask_an_admin(client_as, bob) -> None:  # type: ignore[no-untyped-def]
    page = text(client_as(bob).get("/"))
    assert "Settings → Integrations (ask an admin)" in page
    assert 'href="/sessions/new/"' not in client_as(bob).get("/").content.decode()


def test_dashboard_marks_done_steps(client_as, alice, org_a, pool_a) -> None:  # type: ignore[no-untyped-def]
    CredentialFactory.create(org=org_a)
    page = text(client_as(alice).get("/"))
    assert "✓ Enter your E2B API key" in page
    assert "✓ Add a capacity pool" in page


def test_dashboard_counts_the_server_key_as_a_credential(client_as, alice, settings) -> None:  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = ""
    assert "✓ Enter your E2B API key" not in text(client_as(alice).get("/"))
    settings.E2B_API_KEY = "e2b_from_the_environment"
    assert "✓ Enter your E2B API key" in text(client_as(alice).get("/"))


def test_dashboard_counts_link_to_the_filtered_list(  # type: ignore[no-untyped-def]
    client_as, alice, session_factory, org_b
) -> None:
    for _ in range(3):
        session_factory(SessionState.RUNNING)
    session_factory(SessionState.PAUSED)
    session_factory(SessionState.QUEUED)
    session_factory(SessionState.PROVISIONING)
    session_factory(SessionState.FAILED)
    old = session_factory(SessionState.FAILED)
    Session.objects.filter(pk=old.pk).update(state_changed_at=timezone.now() - timedelta(days=2))
    session_factory(SessionState.RUNNING, org=org_b)
    resp = client_as(alice).get("/")
    html = resp.content.decode()
    cards = dict(
        re.findall(r'<div class="small text-muted">([^<]+)</div>\s*<div class="value">(\d+)', html)
    )
    assert cards == {
        "Running": "3",
        "Paused": "1",
        "Provisioning / queued": "2",
        "Failed (last 24 h)": "1",
    }
    assert 'href="/sessions/?state=running"' in html
    assert 'href="/sessions/?state=queued&amp;state=provisioning"' in html
    assert "Recent sessions" in text(resp)
    # The linked list shows what the card counted.
    c = client_as(alice)
    starting = text(c.get("/sessions/?state=queued&state=provisioning"))
    assert starting.count("Queued") >= 1 and "Provisioning" in starting
    failed = c.get("/sessions/?state=failed&state=lost&since=24h")
    assert len(re.findall(r'href="/sessions/\d+/"', failed.content.decode())) == 1


# --- list ----------------------------------------------------------------------------------


def rows(resp) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(n) for n in re.findall(r'<a href="/sessions/(\d+)/">#', resp.content.decode())]


def test_list_filters(client_as, alice, session_factory, pool_a, org_a) -> None:  # type: ignore[no-untyped-def]
    other_pool = CapacityPoolFactory.create(org=org_a, name="e2b-spare", provider="e2b")
    a = session_factory(SessionState.RUNNING, issue="ENG-1", pool=pool_a)
    b = session_factory(SessionState.PAUSED, issue="ENG-2", pool=pool_a)
    c = session_factory(SessionState.TERMINATED, issue="OPS-9", pool=other_pool)
    d = session_factory(SessionState.QUEUED, issue=None)
    client = client_as(alice)
    assert rows(client.get("/sessions/")) == [d.pk, c.pk, b.pk, a.pk]
    assert rows(client.get("/sessions/?state=paused")) == [b.pk]
    assert rows(client.get("/sessions/?state=paused&state=running")) == [b.pk, a.pk]
    assert rows(client.get(f"/sessions/?pool={other_pool.pk}")) == [c.pk]
    assert rows(client.get("/sessions/?issue=eng")) == [b.pk, a.pk]
    assert rows(client.get("/sessions/?sort=issue")) == [a.pk, b.pk, c.pk, d.pk] or rows(
        client.get("/sessions/?sort=issue")
    ) == [d.pk, a.pk, b.pk, c.pk]
    assert rows(client.get("/sessions/?sort=created")) == [a.pk, b.pk, c.pk, d.pk]
    page = text(client.get("/sessions/"))
    assert "Unattributed" in page and "ENG-1" in page and "UTC" in page
    empty = client.get("/sessions/?issue=NOPE")
    assert "No sessions match these filters" in text(empty)


@pytest.mark.parametrize(
    "query",
    [
        "state=sleeping",
        "pool=999999",
        "pool=abc",
        "since=forever",
        "sort=password",
        "page=-3",
        "page=zzz",
        "issue=" + "x" * 200,
        "issue=%00",
    ],
)
def test_list_bad_filters_are_a_message_not_a_500(  # type: ignore[no-untyped-def]
    client_as, alice, session_factory, query
) -> None:
    s = session_factory()
    resp = client_as(alice).get(f"/sessions/?{query}")
    assert resp.status_code == 200
    if not query.startswith("page="):
        assert "Some filters were not understood" in text(resp)
    assert rows(resp) == [s.pk]


def test_list_paginates_by_25(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    made = [session_factory() for _ in range(30)]
    c = client_as(alice)
    first = c.get("/sessions/")
    assert len(rows(first)) == 25 and "Page 1 of 2 (30 sessions)" in text(first)
    second = c.get("/sessions/?page=2")
    assert rows(second) == [s.pk for s in reversed(made[:5])]


def test_list_counts_a_long_list_only_past_the_page(  # type: ignore[no-untyped-def]
    client_as, alice, session_factory, monkeypatch
) -> None:
    """Past the count's cap the list says "more than" and still pages on; a later page
    counts from where it starts."""
    monkeypatch.setattr("sessions.views.COUNT_CAP", 30)
    made = [session_factory() for _ in range(50)]
    c = client_as(alice)
    first = c.get("/sessions/")
    assert len(rows(first)) == 25
    assert "Page 1 of more than 2 (more than 30 sessions)" in text(first)
    assert "Next" in text(first)
    second = c.get("/sessions/?page=2")
    assert rows(second) == [s.pk for s in reversed(made[:25])]
    assert "Page 2 of 2 (50 sessions)" in text(second)


def test_list_empty_state(client_as, alice) -> None:  # type: ignore[no-untyped-def]
    resp = client_as(alice).get("/sessions/")
    assert "No sessions yet" in text(resp)
    assert 'href="/sessions/new/"' in resp.content.decode()


def test_list_polls_the_table_partial_while_visible(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    c = client_as(alice)
    html = c.get("/sessions/?state=running").content.decode()
    assert 'hx-get="/sessions/?state=running" hx-trigger="every 3s" data-poll-when-visible' in html
    partial = c.htmx("get", "/sessions/?state=running")
    body = partial.content.decode()
    assert partial.status_code == 200
    assert "<html" not in body and 'id="session-table"' in body
    assert rows(partial) == [s.pk]


def test_bulk_terminate_confirms_with_a_count(client_as, alice, session_factory, org_b) -> None:  # type: ignore[no-untyped-def]
    live = [session_factory() for _ in range(3)]
    ended = session_factory(SessionState.TERMINATED)
    foreign = session_factory(org=org_b)
    c = client_as(alice)
    ids = [s.pk for s in live] + [foreign.pk]
    confirm = c.post("/sessions/bulk-terminate/", {"ids": ids})
    assert confirm.status_code == 200
    assert "Terminate 3 sessions?" in text(confirm)  # another org's id is not counted
    assert Session.objects.filter(state=SessionState.TERMINATING).count() == 0
    done = c.post(
        "/sessions/bulk-terminate/", {"ids": [*ids, ended.pk], "confirm": "yes"}, follow=True
    )
    assert "Terminating 3 sessions. 1 could not be terminated" in text(done)
    assert set(Session.objects.filter(state=SessionState.TERMINATING)) == set(live)
    foreign.refresh_from_db()
    assert foreign.state == SessionState.RUNNING
    assert AuditEvent.objects.filter(action="session.terminate_requested").count() == 3
    assert {e.channel for e in AuditEvent.objects.all()} >= {Channel.WEB}


def test_bulk_terminate_with_nothing_ticked(client_as, alice) -> None:  # type: ignore[no-untyped-def]
    resp = client_as(alice).post("/sessions/bulk-terminate/", {}, follow=True)
    assert "Tick the sessions to terminate first." in text(resp)


def test_list_shows_checkboxes_to_admins_only(client_as, alice, bob, session_factory) -> None:  # type: ignore[no-untyped-def]
    session_factory()
    assert 'name="ids"' in client_as(alice).get("/sessions/").content.decode()
    assert 'name="ids"' not in client_as(bob).get("/sessions/").content.decode()


# --- new session ---------------------------------------------------------------------------


def test_new_session_form_lists_kinds_and_pools(client_as, alice, pool_a) -> None:  # type: ignore[no-untyped-def]
    resp = client_as(alice).get("/sessions/new/")
    assert resp.status_code == 200
    html = resp.content.decode()
    for kind in ("npm", "python-pip", "http", "mcp-server", "a2a-protocol"):
        assert f'value="{kind}"' in html
    for kind in ("long-running", "network-egress", "git", "full-history-clone"):
        assert f'value="{kind}"' in html
    assert ">e2b-main</option>" in html
    assert "toolchain:go" in html
    assert html.count("<label") >= 6


def test_new_session_creates_and_redirects(client_as, alice, pool_a) -> None:  # type: ignore[no-untyped-def]
    resp = client_as(alice).post(
        "/sessions/new/",
        {
            "issue_key": "ENG-500",
            "issue_title": "Try the pool",
            "runtime_kinds": ["npm"],
            "requirement_kinds": ["git"],
            "pool": pool_a.pk,
        },
    )
    session = Session.objects.get()
    assert resp.status_code == 302 and resp["Location"] == f"/sessions/{session.pk}/"
    assert session.issue is not None and session.issue.key == "ENG-500"
    assert session.requested_pool == "e2b-main" and session.created_by == alice
    assert AuditEvent.objects.get(action="session.created").channel == Channel.WEB


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"toolchains": "go, rust!"}, "is not a toolchain kind"),
        ({"issue_key": "ENG 1"}, "without spaces"),
        ({"runtime_kinds": ["cobol"]}, "Select a valid choice"),
        ({"pool": "999999"}, "Select a valid choice"),
    ],
)
def test_new_session_errors_keep_the_form(client_as, alice, pool_a, data, message) -> None:  # type: ignore[no-untyped-def]
    resp = client_as(alice).post("/sessions/new/", data)
    assert resp.status_code == 400
    assert message in text(resp)
    assert not Session.objects.exists()


def test_new_session_toolchain_no_pool_provides_fails_plainly(client_as, alice, pool_a) -> None:  # type: ignore[no-untyped-def]
    resp = client_as(alice).post("/sessions/new/", {"toolchains": "go"}, follow=True)
    session = Session.objects.get()
    assert session.runtime_kinds == ["toolchain:go"]
    assert session.state == SessionState.FAILED
    assert "toolchain:go" in text(resp)
