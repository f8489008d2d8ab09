"""The service API the pages and the JSON API call: validation, idempotency, actions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pools.models import CapacityPool
from pools.providers.fake import FakeCloud
from rensei.crypto import decrypt
from rensei.models import AuditEvent, Organization
from sessions import jobs, jobs_exec, services
from sessions.models import (
    CommandRun,
    CommandRunState,
    Issue,
    Session,
    SessionState,
    SessionTransition,
)
from sessions.services import IdempotencyConflict, SessionRequestError

S = SessionState
pytestmark = pytest.mark.django_db


def test_create_session_dispatches_and_records_everything(
    pool: CapacityPool, new_session: Callable[..., Session], alice: object
) -> None:
    session = new_session(actor=alice, issue_url="https://tracker.example/ENG-142")
    assert session.state == S.PROVISIONING
    assert session.pool == pool
    assert session.provider == "fake"
    assert session.routing["chosen"] == "fake-1"
    assert session.issue is not None and session.issue.key == "ENG-142"
    assert session.issue.url == "https://tracker.example/ENG-142"
    assert [t.to_state for t in session.transitions.all()] == ["queued", "provisioning"]
    event = AuditEvent.objects.get(action="session.created")
    assert event.actor == alice and event.channel == "web"


def test_issue_is_reused_and_its_title_updated(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    first = new_session()
    second = new_session(issue_title="Fix the login page for good")
    assert first.issue_id == second.issue_id
    assert Issue.objects.get().title == "Fix the login page for good"


def test_session_without_issue_is_unattributed(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = new_session(issue_key=None, issue_title="")
    assert session.issue is None
    assert Issue.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"runtime_kinds": ["cobol"]}, "runtime_kinds"),
        ({"requirement_kinds": "git"}, "requirement_kinds"),
        ({"pool_name": "nope"}, "pool"),
        ({"issue_key": "has space"}, "issue_key"),
        ({"issue_url": "javascript:alert(1)"}, "issue_url"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"TOKEN": 5}}, "env"),
        ({"issue_key": None, "issue_title": "orphan title"}, "issue_key"),
    ],
)
def test_bad_input_raises_before_anything_is_saved(
    pool: CapacityPool,
    new_session: Callable[..., Session],
    overrides: dict[str, object],
    field: str,
) -> None:
    with pytest.raises(SessionRequestError) as caught:
        new_session(**overrides)
    assert caught.value.field == field
    assert caught.value.message
    assert Session.objects.count() == 0
    assert Issue.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_env_values_are_encrypted_at_rest_and_names_kept(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = new_session(env={"GITHUB_TOKEN": "ghp_secretvalue123"})
    stored = Session.objects.values_list("env", flat=True).get(pk=session.pk)
    assert list(stored) == ["GITHUB_TOKEN"]
    assert "ghp_secretvalue123" not in str(stored)
    assert services.session_env(session) == {"GITHUB_TOKEN": "ghp_secretvalue123"}
    assert "ghp_secretvalue123" not in str(list(AuditEvent.objects.values_list("detail")))


def test_idempotency_key_returns_the_same_session_or_conflicts(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    first = new_session(idempotency_key="req-1", body_hash="aaa", channel="api")
    again = new_session(idempotency_key="req-1", body_hash="aaa", channel="api")
    assert again.pk == first.pk
    with pytest.raises(IdempotencyConflict) as caught:
        new_session(idempotency_key="req-1", body_hash="bbb", channel="api")
    assert caught.value.session.pk == first.pk
    assert Session.objects.count() == 1


def test_allowed_actions_follow_state_and_capabilities(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = new_session()
    assert services.allowed_actions(session) == {"terminate"}
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert services.allowed_actions(session) == {"pause", "terminate", "exec"}
    session.state = S.PAUSED
    assert services.allowed_actions(session) == {"resume", "terminate"}
    session.state = S.TERMINATING
    assert services.allowed_actions(session) == set()
    session.state = S.LOST
    assert services.allowed_actions(session) == set()


def test_requests_move_state_once_and_refuse_otherwise(
    pool: CapacityPool, new_session: Callable[..., Session], alice: object
) -> None:
    session = new_session()
    assert services.request_pause(session, alice, "web") is False  # still provisioning
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert services.request_resume(session, alice, "web") is False
    assert services.request_pause(session, alice, "web") is True
    assert Session.objects.get(pk=session.pk).state == S.PAUSING
    assert services.request_pause(session, alice, "web") is False
    assert services.request_terminate(session, alice, "api") is True
    assert services.request_terminate(session, alice, "api") is False
    assert (
        AuditEvent.objects.filter(action="session.terminate_requested", channel="api").count() == 1
    )


def test_run_command_keeps_names_and_clears_values_after_the_run(
    pool: CapacityPool, new_session: Callable[..., Session], cloud: FakeCloud, bob: object
) -> None:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    run = services.run_command(
        session, command="echo $GREETING", env={"GREETING": "hello-there"}, actor=bob
    )
    assert run.env_names == ["GREETING"]
    assert run.env_encrypted and "hello-there" not in run.env_encrypted
    assert decrypt(run.env_encrypted) == '{"GREETING": "hello-there"}'
    jobs.exec_command(run.pk)
    run.refresh_from_db()
    assert run.state == CommandRunState.DONE
    assert run.exit_code == 0
    assert run.stdout == "hello-there\n"
    assert run.env_encrypted == ""
    assert run.created_by == bob


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"command": "  "}, "command"),
        ({"command": "ls", "timeout": 0}, "timeout"),
        ({"command": "ls", "timeout": "10"}, "timeout"),
        ({"command": "ls", "env": {"A B": "x"}}, "env"),
    ],
)
def test_run_command_rejects_bad_input(
    pool: CapacityPool,
    new_session: Callable[..., Session],
    kwargs: dict[str, object],
    field: str,
) -> None:
    session = new_session()
    jobs.provision(session.pk)
    with pytest.raises(SessionRequestError) as caught:
        services.run_command(session, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert CommandRun.objects.count() == 0


def test_run_command_only_in_a_running_session(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = new_session()
    with pytest.raises(SessionRequestError, match="provisioning"):
        services.run_command(session, command="ls")
    assert CommandRun.objects.count() == 0


def test_exec_output_is_capped_and_flagged(
    pool: CapacityPool, new_session: Callable[..., Session], cloud: FakeCloud
) -> None:
    from pools.providers.base import ExecResult

    cloud.exec_handler = lambda sandbox, command, env: ExecResult(3, "é" * 40_000 + "\x00", "short")
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    run = services.run_command(session, command="big")
    jobs.exec_command(run.pk)
    run.refresh_from_db()
    assert run.exit_code == 3
    assert run.stdout_truncated is True and run.stderr_truncated is False
    # The head and the tail are kept, the marker says how much of the middle was left out.
    head, marker, tail = run.stdout.split("\n")
    assert marker == f"… {80_000 - jobs_exec.OUTPUT_CAP:,} bytes omitted …"
    assert set(head) == set(tail) == {"é"}
    assert len(head.encode()) + len(tail.encode()) == jobs_exec.OUTPUT_CAP
    assert run.stderr == "short"
    # A redelivered job does not run the command a second time.
    jobs.exec_command(run.pk)
    assert [c for c in cloud.calls if c[0] == "exec_command"].__len__() == 1


def test_redelivered_exec_of_a_run_in_flight_is_an_error_not_a_rerun(
    pool: CapacityPool, new_session: Callable[..., Session], cloud: FakeCloud
) -> None:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    run = services.run_command(session, command="echo hi", env={"A": "b"})
    CommandRun.objects.filter(pk=run.pk).update(state=CommandRunState.RUNNING)
    jobs.exec_command(run.pk)
    run.refresh_from_db()
    assert run.state == CommandRunState.ERROR
    assert "outcome is unknown" in run.error
    assert run.env_encrypted == ""
    assert not [c for c in cloud.calls if c[0] == "exec_command"]


def test_dashboard_counts_in_one_query(
    pool: CapacityPool,
    new_session: Callable[..., Session],
    org_a: Organization,
    django_assert_num_queries: object,
) -> None:
    running = new_session()
    jobs.provision(running.pk)
    new_session()  # provisioning
    failed = new_session()
    Session.objects.filter(pk=failed.pk).update(state=S.FAILED)
    with django_assert_num_queries(1):  # type: ignore[operator]
        counts = services.dashboard_counts(org_a)
    assert counts == {"running": 1, "paused": 0, "starting": 1, "failed_24h": 1}


def test_every_transition_has_a_timeline_row(
    pool: CapacityPool, new_session: Callable[..., Session]
) -> None:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    services.request_pause(session)
    jobs.pause(session.pk)
    session.refresh_from_db()
    services.request_resume(session)
    jobs.resume(session.pk)
    session.refresh_from_db()
    services.request_terminate(session)
    jobs.terminate(session.pk)
    rows = list(
        SessionTransition.objects.filter(session=session).values_list("to_state", flat=True)
    )
    assert rows == [
        "queued",
        "provisioning",
        "running",
        "pausing",
        "paused",
        "resuming",
        "running",
        "terminating",
        "terminated",
    ]
