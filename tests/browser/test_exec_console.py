"""Alice runs a command from the exec console with Ctrl+Enter and watches its output come in.

The command prints its first line, then waits for a file in its sandbox that the test
creates only once the page shows that line with the run still going; output shown only at
the end would leave the page without it (and the command would give up and exit 7).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from sessions import services
from sessions.models import CommandRun, Session, SessionState
from tests.browser.conftest import JOB_TIMEOUT, login, mark_page, same_page, shot
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import make_pool

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT_FOR_GO = "for i in $(seq 600); do [ -f go ] && break; sleep 0.1; done; [ -f go ] || exit 7"
# Forty rows first: more than the output box shows, so it has to follow the end.
COMMAND = (
    "seq -f 'row %g' 40; for i in 1 2 3 4 5; do echo line$i; sleep 1; done; "
    f"{WAIT_FOR_GO}; echo all done"
)
AT_END = "pre => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8"


def running_session(org) -> Session:  # type: ignore[no-untyped-def]
    make_pool(org, "demo-e2b", provider="e2b", config={"templateId": "donmai-worker"})
    session = services.create_session(
        org, issue_key="ENG-9", runtime_kinds=["npm"], requirement_kinds=["git"]
    )

    def running() -> bool:
        session.refresh_from_db()
        return session.state == SessionState.RUNNING

    wait_for(running, timeout=JOB_TIMEOUT / 1000, interval=0.1)
    return session


def test_ctrl_enter_runs_and_the_output_comes_while_it_runs(stack, page, alice, org_a):  # type: ignore[no-untyped-def]
    session = running_session(org_a)
    home: Path = stack["emulator"].emulator.sandboxes[session.sandbox_id].home
    login(page, stack["url"], "alice", "pw-alice")
    page.goto(f"{stack['url']}/sessions/{session.pk}/")
    mark_page(page)

    timeout = page.get_by_label("Timeout (seconds)")
    timeout.fill("120")
    command = page.get_by_label("Command")
    command.fill(COMMAND)
    command.press("Control+Enter")

    output = page.locator("#exec-output")
    badge = output.locator(".run-outcome")
    expect(badge).to_have_text("Running…", timeout=JOB_TIMEOUT)
    stdout = output.locator("pre.output").first
    expect(stdout).to_contain_text("line1", timeout=JOB_TIMEOUT)
    # The first line is on the page and the command is still waiting for the go-ahead.
    expect(badge).to_have_text("Running…")
    assert CommandRun.objects.get().finished is False
    # The box scrolled to its end, where the new lines are.
    page.wait_for_function(f"({AT_END})(document.querySelector('#exec-output pre.output'))")
    shot(page, "exec-1-output-while-running")

    (home / "go").touch()
    expect(badge).to_have_text("Exited 0", timeout=JOB_TIMEOUT)
    expect(stdout).to_have_text(
        re.compile(r"row 40\nline1\nline2\nline3\nline4\nline5\nall done\n?$")
    )
    assert stdout.text_content().startswith("row 1\nrow 2\n")
    # The next command starts from the default timeout, not the one just used.
    expect(timeout).to_have_value("600")
    expect(command).to_have_value("")
    expect(page.locator("#exec-runs tbody tr").first).to_contain_text("Exited 0")
    assert same_page(page)
    shot(page, "exec-2-finished")
