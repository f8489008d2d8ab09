"""Exec output while the command runs: service → real Celery worker → real SDK → emulator.

The command prints, then waits for a file in its sandbox that the test creates only after
it has seen that output on the run (and on the page's output panel): if output were
written only at the end, the command would give up after a minute and exit 7, and the
test would never see its first line while it ran. No timing is asserted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from pools.e2b_emulator.testing import RunningEmulator
from rensei.models import Organization
from sessions import services
from sessions.models import CommandRun, CommandRunState, Session, SessionState
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool
from tests.worker import emulator_with_worker

API_KEY = "e2b_exec_streaming_key"
WAIT = 60  # seconds: a bound for polling, not a timing assertion
WAIT_FOR_GO = "for i in $(seq 600); do [ -f go ] && break; sleep 0.1; done; [ -f go ] || exit 7"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def emu(django_db_setup: None, django_db_blocker: Any) -> Iterator[RunningEmulator]:
    with emulator_with_worker(django_db_blocker, api_key=API_KEY) as (emulator, _worker):
        yield emulator


@pytest.fixture
def session(emu: RunningEmulator, org_a: Organization) -> Iterator[Session]:
    ensure_rate_cards()
    make_pool(org_a, "demo-e2b", provider="e2b", config={"templateId": "donmai-worker"})
    created = services.create_session(
        org_a, issue_key="ENG-7", runtime_kinds=["npm"], requirement_kinds=["git"]
    )

    def running() -> bool:
        created.refresh_from_db()
        return created.state == SessionState.RUNNING

    wait_for(running, timeout=WAIT, interval=0.1)
    yield created
    for sandbox_id in emu.emulator.sandbox_ids():
        emu.emulator.kill_sandbox(sandbox_id)


def text(resp: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", resp.content.decode()))


def wait_run(run: CommandRun, check: Any) -> CommandRun:
    def ok() -> bool:
        run.refresh_from_db()
        return bool(check(run))

    try:
        wait_for(ok, timeout=WAIT, interval=0.05)
    except AssertionError:
        raise AssertionError(f"run {run.pk}: {run.state} {run.stdout!r} {run.error!r}") from None
    return run


def test_the_first_line_shows_before_the_command_ends(  # type: ignore[no-untyped-def]
    emu: RunningEmulator, session: Session, alice, client_as
) -> None:
    home = emu.emulator.sandboxes[session.sandbox_id].home
    run = services.run_command(
        session,
        command=f"for i in 1 2 3 4 5; do echo line$i; sleep 1; done; {WAIT_FOR_GO}; echo last",
    )
    wait_run(run, lambda r: "line1\n" in r.stdout)
    assert run.state == CommandRunState.RUNNING, "line1 appeared only when the run ended"

    # The output panel the console polls shows it too, and keeps polling (not 286).
    panel = client_as(alice).htmx("get", f"/sessions/{session.pk}/exec/{run.pk}/")
    assert panel.status_code == 200
    assert "line1" in text(panel) and "Running" in text(panel)

    (home / "go").touch()
    wait_run(run, lambda r: r.finished)
    assert (run.state, run.outcome) == (CommandRunState.DONE, "Exited 0")
    assert run.stdout == "line1\nline2\nline3\nline4\nline5\nlast\n"
    done = client_as(alice).htmx("get", f"/sessions/{session.pk}/exec/{run.pk}/")
    assert done.status_code == 286 and "Exited 0" in text(done)


def test_a_timed_out_command_keeps_what_it_printed(emu: RunningEmulator, session: Session) -> None:
    run = services.run_command(session, command="echo before; sleep 60; echo after", timeout=2)
    wait_run(run, lambda r: r.finished)
    assert run.state == CommandRunState.ERROR and run.timed_out
    assert run.outcome == "Timed out" and "did not finish within 2 s" in run.error
    assert run.stdout == "before\n"
