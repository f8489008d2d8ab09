"""The session page as people see it: timeline, times, actions, status polling, exec console."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rensei.models import AuditEvent, Channel
from sessions.models import (
    CommandRun,
    CommandRunState,
    Session,
    SessionState,
)
from tests.factories import CommandRunFactory, RunningIntervalFactory, SessionFactory
from tests.sessions_web.conftest import T0, standard_timeline
from tests.sessions_web.helpers import text

pytestmark = pytest.mark.django_db


# --- detail --------------------------------------------------------------------------------


def test_detail_shows_timeline_sandbox_routing_and_times(  # type: ignore[no-untyped-def]
    client_as, alice, session_factory, pool_a
) -> None:
    s = session_factory(
        SessionState.PAUSED,
        pool=pool_a,
        transitions=standard_timeline(),
        last_error="E2B answered 429 once; retried.",
        routing={
            "chosen": "e2b-main",
            "skipped": [{"pool": "gpu-pool", "reason": "missing toolchain:go"}],
        },
        env={"GITHUB_TOKEN": "gAAAA-encrypted"},
    )
    RunningIntervalFactory.create(
        session=s,
        started_at=T0 + timedelta(seconds=4),
        ended_at=T0 + timedelta(minutes=3, seconds=4),
    )
    resp = client_as(alice).get(f"/sessions/{s.pk}/")
    assert resp.status_code == 200
    page = text(resp)
    assert "2026-03-02 09:00:00 UTC" in page
    assert "queued → provisioning 2026-03-02 09:00:01 UTC 3 s" in page
    assert "provisioning → running 2026-03-02 09:00:04 UTC 3 min 00 s" in page
    assert "pausing → paused 2026-03-02 09:03:05 UTC" in page and "so far" in page
    assert s.sandbox_id in page and "donmai-worker" in page
    assert "vCPU 2" in page and "Memory 1 GiB" in page
    assert "Running (billed) 3 min 00 s" in page
    assert "Chosen pool: e2b-main" in page
    assert "gpu-pool missing toolchain:go" in page
    assert "Last error: E2B answered 429 once; retried." in page
    assert "GITHUB_TOKEN" in page and "gAAAA-encrypted" not in resp.content.decode()
    # Paused now: Resume and Terminate, each with a confirmation; no Pause.
    html = resp.content.decode()
    assert f'hx-post="/sessions/{s.pk}/resume/"' in html
    assert f'hx-post="/sessions/{s.pk}/terminate/"' in html
    assert f'hx-post="/sessions/{s.pk}/pause/"' not in html
    assert 'hx-confirm="Terminate session' in html


def test_detail_paused_time_comes_from_the_gaps(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory(SessionState.TERMINATED)
    Session.objects.filter(pk=s.pk).update(ended_at=T0 + timedelta(hours=2))
    RunningIntervalFactory.create(session=s, started_at=T0, ended_at=T0 + timedelta(minutes=10))
    RunningIntervalFactory.create(
        session=s,
        started_at=T0 + timedelta(hours=1),
        ended_at=T0 + timedelta(hours=1, minutes=5),
    )
    page = text(client_as(alice).get(f"/sessions/{s.pk}/"))
    assert "Running (billed) 15 min 00 s" in page
    assert "Paused (not billed) 1 h 45 min" in page


def test_detail_for_members_and_finance_has_no_buttons_or_console(  # type: ignore[no-untyped-def]
    client_as, bob, fiona, session_factory
) -> None:
    s = session_factory()
    for person in (bob, fiona):
        resp = client_as(person).get(f"/sessions/{s.pk}/")
        assert resp.status_code == 200
        html = resp.content.decode()
        assert "/pause/" not in html and "/terminate/" not in html
        assert "Exec console" not in html


def test_status_partial_polls_until_the_session_ends_and_stops_with_286(  # type: ignore[no-untyped-def]
    client_as, alice, session_factory
) -> None:
    s = session_factory(SessionState.PROVISIONING)
    c = client_as(alice)
    page = c.get(f"/sessions/{s.pk}/").content.decode()
    assert f'hx-get="/sessions/{s.pk}/status/"' in page
    polling = c.htmx("get", f"/sessions/{s.pk}/status/")
    assert polling.status_code == 200 and "Provisioning" in text(polling)
    assert "<html" not in polling.content.decode()
    # Running is not final: the API or a job may pause or end it, so the page keeps polling.
    Session.objects.filter(pk=s.pk).update(state=SessionState.RUNNING, sandbox_id="sbx-live")
    running = c.htmx("get", f"/sessions/{s.pk}/status/")
    assert running.status_code == 200
    assert "Running" in text(running) and "sbx-live" in text(running)
    assert 'hx-trigger="every 3s' in running.content.decode()
    Session.objects.filter(pk=s.pk).update(state=SessionState.TERMINATED)
    ended = c.htmx("get", f"/sessions/{s.pk}/status/")
    assert ended.status_code == 286 and "Terminated" in text(ended)
    assert 'hx-trigger="every' not in ended.content.decode()
    # An ended session's page does not poll at all.
    assert f'hx-get="/sessions/{s.pk}/status/"' not in c.get(f"/sessions/{s.pk}/").content.decode()


def test_pause_button_through_htmx(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    resp = client_as(alice).htmx("post", f"/sessions/{s.pk}/pause/")
    assert resp.status_code == 200
    page = text(resp)
    assert f"Pausing session {s.pk}…" in page and "Pausing" in page
    assert f'hx-get="/sessions/{s.pk}/status/"' in resp.content.decode()  # polls now
    s.refresh_from_db()
    assert s.state == SessionState.PAUSING
    event = AuditEvent.objects.get(action="session.pause_requested")
    assert event.channel == Channel.WEB and event.actor == alice


def test_action_not_allowed_says_why(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory(SessionState.PAUSED)
    resp = client_as(alice).htmx("post", f"/sessions/{s.pk}/pause/")
    assert "This session cannot be paused now: it is paused." in text(resp)
    plain = client_as(alice).post(f"/sessions/{s.pk}/resume/", follow=True)
    assert f"Resuming session {s.pk}…" in text(plain)
    s.refresh_from_db()
    assert s.state == SessionState.RESUMING


def test_actions_need_post_and_csrf(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    c = client_as(alice)
    assert c.get(f"/sessions/{s.pk}/terminate/").status_code == 405
    assert c.post(f"/sessions/{s.pk}/terminate/", csrf=False).status_code == 403
    s.refresh_from_db()
    assert s.state == SessionState.RUNNING


# --- exec console --------------------------------------------------------------------------


def test_exec_console_shows_a_finished_run(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    run = CommandRunFactory.create(
        session=s,
        command="which donmai",
        state=CommandRunState.DONE,
        exit_code=0,
        stdout="/usr/local/bin/donmai\n",
        stderr="",
        stdout_truncated=True,
        created_by=alice,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
    )
    c = client_as(alice)
    detail = c.get(f"/sessions/{s.pk}/")
    page = text(detail)
    assert "Exec console" in page and "Past runs" in page and "which donmai" in page
    html = detail.content.decode()
    assert 'name="timeout"' in html and 'value="600"' in html
    assert "10 minutes" in page
    out = c.htmx("get", f"/sessions/{s.pk}/exec/{run.pk}/")
    assert out.status_code == 286  # finished: the panel stops polling
    body = out.content.decode()
    assert "data-follow-output>/usr/local/bin/donmai\n</pre>" in body
    assert "Exited 0" in text(out)
    assert "Output capped" in text(out) and "stdout" in text(out)
    full = c.get(f"/sessions/{s.pk}/exec/{run.pk}/")
    assert full.status_code == 200 and "Command run" in text(full)


def test_exec_output_panel_polls_until_the_run_ends(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    run = CommandRunFactory.create(session=s, command="sleep 5", state=CommandRunState.RUNNING)
    c = client_as(alice)
    resp = c.htmx("get", f"/sessions/{s.pk}/exec/{run.pk}/")
    assert resp.status_code == 200
    assert f'hx-get="/sessions/{s.pk}/exec/{run.pk}/"' in resp.content.decode()
    assert "Running…" in text(resp)
    CommandRun.objects.filter(pk=run.pk).update(
        state=CommandRunState.DONE, exit_code=3, stderr="boom"
    )
    done = c.htmx("get", f"/sessions/{s.pk}/exec/{run.pk}/")
    assert done.status_code == 286 and "Exited 3" in text(done) and "boom" in text(done)


def test_exec_console_runs_a_command(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    resp = client_as(alice).htmx(
        "post",
        f"/sessions/{s.pk}/exec/",
        {"command": "echo $GREETING", "env": "GREETING=hi there\n\nOTHER=x=y", "timeout": "30"},
    )
    assert resp.status_code == 200
    run = CommandRun.objects.get()
    assert run.command == "echo $GREETING" and run.timeout_seconds == 30
    assert run.env_names == ["GREETING", "OTHER"]
    html = resp.content.decode()
    assert f'hx-get="/sessions/{s.pk}/exec/{run.pk}/"' in html  # the output panel polls
    assert "hi there" not in html


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"command": "  ", "timeout": "600"}, "Enter a command."),
        (
            {"command": "id", "env": "no equals sign", "timeout": "600"},
            "Line 1: expected NAME=value",
        ),
        # The API's words for the same rules (rensei/inputs.py).
        ({"command": "id", "env": "1X=2", "timeout": "600"}, "Line 1: “1X” is not a valid"),
        ({"command": "id", "timeout": "0"}, "Must be between 1 and 3600 seconds."),
        ({"command": "id", "timeout": "ten"}, "Enter a whole number."),
    ],
)
def test_exec_console_form_errors(client_as, alice, session_factory, data, message) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    c = client_as(alice)
    resp = c.htmx("post", f"/sessions/{s.pk}/exec/", data)
    assert resp.status_code == 200 and message in text(resp)
    plain = c.post(f"/sessions/{s.pk}/exec/", data)
    assert plain.status_code == 400 and message in text(plain)
    assert not CommandRun.objects.exists()


def test_exec_console_on_a_paused_session(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory(SessionState.PAUSED)
    c = client_as(alice)
    assert "Commands run only while the session is running." in text(c.get(f"/sessions/{s.pk}/"))
    resp = c.htmx("post", f"/sessions/{s.pk}/exec/", {"command": "id", "timeout": "600"})
    assert "Commands run only in a running session; this one is paused." in text(resp)
    assert not CommandRun.objects.exists()


def test_finished_run_tells_the_past_runs_list_to_reload(client_as, alice, org_a):  # type: ignore[no-untyped-def]
    from sessions.models import CommandRunState, SessionState

    session = SessionFactory.create(org=org_a, state=SessionState.RUNNING, sandbox_id="sbx")
    run = CommandRunFactory.create(
        session=session, command="which donmai", state=CommandRunState.DONE, exit_code=0
    )
    c = client_as(alice)
    page = c.get(f"/sessions/{session.pk}/").content.decode()
    assert 'hx-trigger="runStarted from:body, runFinished from:body"' in page  # it listens
    resp = c.get(f"/sessions/{session.pk}/exec/{run.pk}/", HTTP_HX_REQUEST="true")
    assert resp.status_code == 286
    assert resp["HX-Trigger"] == "runFinished"
