"""The JSON API: pause, resume and terminate, and exec runs (create, read, bad input)."""

from __future__ import annotations

import pytest

from rensei.models import AuditEvent, Channel
from sessions.models import CommandRun, CommandRunState, Session, SessionState
from tests.sessions_web.conftest import ApiClient

pytestmark = pytest.mark.django_db


def test_pause_resume_terminate(api: ApiClient, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    resp = api.post(f"/api/v1/sessions/{s.pk}/pause")
    assert resp.status_code == 202
    assert resp.json() == {"id": s.pk, "state": "pausing", "accepted": True}
    # Pausing is a transitional state: pausing again is a conflict, with a reason.
    resp = api.post(f"/api/v1/sessions/{s.pk}/pause")
    assert resp.status_code == 409
    assert resp.json()["error"] == "Cannot pause a session that is pausing."
    assert resp.json()["accepted"] is False
    event = AuditEvent.objects.get(action="session.pause_requested")
    assert event.channel == Channel.API

    Session.objects.filter(pk=s.pk).update(state=SessionState.PAUSED)
    assert api.post(f"/api/v1/sessions/{s.pk}/resume").json()["state"] == "resuming"
    resp = api.post(f"/api/v1/sessions/{s.pk}/terminate")
    assert resp.status_code == 202 and resp.json()["state"] == "terminating"
    assert api.post(f"/api/v1/sessions/{s.pk}/terminate").status_code == 409


def test_actions_on_ended_sessions_are_409(api: ApiClient, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory(SessionState.TERMINATED)
    for action in ("pause", "resume", "terminate"):
        resp = api.post(f"/api/v1/sessions/{s.pk}/{action}")
        assert resp.status_code == 409
        assert "terminated" in resp.json()["error"]
    assert api.post(f"/api/v1/sessions/{s.pk}/exec", {"command": "id"}).status_code == 409


def test_action_that_loses_the_race_is_accepted_false(  # type: ignore[no-untyped-def]
    api: ApiClient, session_factory, monkeypatch
) -> None:
    s = session_factory()

    def lost(session, actor, channel):  # type: ignore[no-untyped-def]
        Session.objects.filter(pk=session.pk).update(state=SessionState.TERMINATING)
        return False

    monkeypatch.setitem(__import__("sessions.api").api.ACTIONS, "pause", lost)
    resp = api.post(f"/api/v1/sessions/{s.pk}/pause")
    assert resp.status_code == 202
    assert resp.json() == {"id": s.pk, "state": "terminating", "accepted": False}


# --- exec ----------------------------------------------------------------------------------


def test_exec_creates_a_run_and_reads_it_back(api: ApiClient, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    resp = api.post(
        f"/api/v1/sessions/{s.pk}/exec",
        {"command": "which donmai", "env": {"TOKEN": "hush"}, "timeout": 30},
    )
    assert resp.status_code == 202, resp.content
    data = resp.json()
    run = CommandRun.objects.get(pk=data["id"])
    assert run.session == s and run.timeout_seconds == 30 and run.env_names == ["TOKEN"]
    assert data["state"] == "queued" and data["exit_code"] is None
    assert resp["Location"] == f"/api/v1/sessions/{s.pk}/exec/{run.pk}"
    assert "hush" not in resp.content.decode()
    assert AuditEvent.objects.get(action="session.command_run").channel == Channel.API
    # JSON Schema counts 30.0 as an integer; so does the API.
    assert (
        api.post(f"/api/v1/sessions/{s.pk}/exec", {"command": "id", "timeout": 30.0}).json()[
            "timeout"
        ]
        == 30
    )
    # Default timeout: ten minutes.
    second = api.post(f"/api/v1/sessions/{s.pk}/exec", {"command": "id"}).json()
    assert second["timeout"] == 600


def test_exec_run_shows_result_and_truncation(api: ApiClient, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    run = CommandRun.objects.create(
        session=s,
        command="which donmai",
        state=CommandRunState.DONE,
        exit_code=0,
        stdout="/usr/local/bin/donmai\n",
        stderr="warn",
        stderr_truncated=True,
    )
    data = api.get(f"/api/v1/sessions/{s.pk}/exec/{run.pk}").json()
    assert data["state"] == "done" and data["exit_code"] == 0
    assert data["stdout"] == "/usr/local/bin/donmai\n" and data["stderr"] == "warn"
    assert data["stdout_truncated"] is False and data["stderr_truncated"] is True
    # A run id from another session of the same org is not found under this one.
    other = session_factory()
    assert api.get(f"/api/v1/sessions/{other.pk}/exec/{run.pk}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "command"),
        ({"command": ""}, "command"),
        ({"command": "   "}, "command"),
        ({"command": ["ls"]}, "command"),
        ({"command": "x" * 10_001}, "command"),
        ({"command": "id", "timeout": "10"}, "timeout"),
        ({"command": "id", "timeout": 0}, "timeout"),
        ({"command": "id", "timeout": 3601}, "timeout"),
        ({"command": "id", "timeout": 1.5}, "timeout"),
        ({"command": "id", "timeout": True}, "timeout"),
        ({"command": "id", "env": {"A-B": "1"}}, "env.A-B"),
        ({"command": "id", "shell": "zsh"}, "shell"),
    ],
)
def test_exec_names_the_bad_field(api: ApiClient, session_factory, body, field) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    resp = api.post(f"/api/v1/sessions/{s.pk}/exec", body)
    assert resp.status_code == 400, resp.content
    assert list(resp.json()["fields"]) == [field]
    assert not CommandRun.objects.exists()


def test_exec_on_a_paused_session_is_409(api: ApiClient, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory(SessionState.PAUSED)
    resp = api.post(f"/api/v1/sessions/{s.pk}/exec", {"command": "id"})
    assert resp.status_code == 409
    assert "paused" in resp.json()["error"]
