"""The exec console as an admin sees it: output so far, outcome labels, the cap's marker,
the timeout field after a run, and the Ctrl+Enter wiring (the key itself is pressed in
tests/browser/test_exec_console.py)."""

from __future__ import annotations

import re

import pytest

from sessions.models import CommandRun, CommandRunState
from sessions.output import cap_output
from tests.factories import CommandRunFactory
from tests.sessions_web.conftest import T0
from tests.sessions_web.helpers import text

pytestmark = pytest.mark.django_db


def panel(client, run: CommandRun):  # type: ignore[no-untyped-def]
    return client.htmx("get", f"/sessions/{run.session_id}/exec/{run.pk}/")


def test_a_running_command_shows_its_output_so_far(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    run = CommandRunFactory.create(
        session=s,
        command="for i in 1 2 3; do echo line$i; sleep 1; done",
        state=CommandRunState.RUNNING,
        started_at=T0,
        stdout="line1\n",
        stderr="warming up\n",
    )
    resp = panel(client_as(alice), run)
    assert resp.status_code == 200  # still polling
    html = resp.content.decode()
    assert 'hx-trigger="every 1s"' in html
    assert "line1" in text(resp) and "warming up" in text(resp)
    assert "Running…" in text(resp) and "the output so far" in text(resp)

    empty = CommandRunFactory.create(session=s, command="sleep 9", state=CommandRunState.RUNNING)
    assert "No output yet." in text(panel(client_as(alice), empty))


@pytest.mark.parametrize(
    ("fields", "label", "colour"),
    [
        ({"state": CommandRunState.DONE, "exit_code": 0}, "Exited 0", "bg-success"),
        ({"state": CommandRunState.DONE, "exit_code": 3}, "Exited 3", "bg-danger"),
        (
            {"state": CommandRunState.ERROR, "timed_out": True, "error": "Did not finish."},
            "Timed out",
            "bg-dark",
        ),
        ({"state": CommandRunState.ERROR, "error": "Sandbox gone."}, "Error", "bg-dark"),
        ({"state": CommandRunState.QUEUED}, "Queued…", "bg-primary"),
    ],
)
def test_outcomes_are_labelled(client_as, alice, session_factory, fields, label, colour) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    run = CommandRunFactory.create(session=s, command="make test", **fields)
    c = client_as(alice)
    resp = panel(c, run)
    badge = re.search(
        r'<span class="badge run-outcome ([\w-]+)">(.*?)</span>\s*</div>',
        resp.content.decode(),
        re.S,
    )
    assert badge is not None
    assert badge.group(1) == colour
    assert re.sub(r"<[^>]+>|\s+", "", badge.group(2)) == label.replace(" ", "")
    assert "Done" not in text(resp)
    # The Past runs list says the same.
    row = re.search(
        r'<td><code>make test</code></td>\s*<td class="text-nowrap">(.*?)</td>',
        c.get(f"/sessions/{s.pk}/").content.decode(),
    )
    assert row is not None and row.group(1) == label.rstrip("…")


def test_past_runs_hear_when_a_run_starts_and_ends(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    run = CommandRunFactory.create(session=s, command="make", state=CommandRunState.QUEUED)
    c = client_as(alice)
    url = f"/sessions/{s.pk}/exec/{run.pk}/"
    assert "HX-Trigger" not in c.htmx("get", url, {"seen": "queued"})
    CommandRun.objects.filter(pk=run.pk).update(state=CommandRunState.RUNNING)
    started = c.htmx("get", url, {"seen": "queued"})
    assert started.status_code == 200 and started["HX-Trigger"] == "runStarted"
    assert "HX-Trigger" not in c.htmx("get", url, {"seen": "running"})
    CommandRun.objects.filter(pk=run.pk).update(state=CommandRunState.DONE, exit_code=0)
    assert c.htmx("get", url, {"seen": "running"})["HX-Trigger"] == "runFinished"
    detail = c.get(f"/sessions/{s.pk}/").content.decode()
    assert 'hx-trigger="runStarted from:body, runFinished from:body"' in detail


def test_a_capped_output_keeps_the_tail_and_says_so(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    stdout, cut = cap_output("".join(f"step {i}\n" for i in range(20_000)) + "FAILED: step 19999\n")
    run = CommandRunFactory.create(
        session=s,
        command="./build.sh",
        state=CommandRunState.DONE,
        exit_code=1,
        stdout=stdout,
        stdout_truncated=cut,
    )
    page = text(panel(client_as(alice), run))
    assert "step 0 " in page and "FAILED: step 19999" in page
    assert re.search(r"… [\d,]+ bytes omitted …", page)
    assert "the first 32 KB and the last 32 KB of stdout are kept" in page


def test_the_timeout_goes_back_to_the_default_after_a_run(
    client_as, alice, session_factory
) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    resp = client_as(alice).htmx(
        "post", f"/sessions/{s.pk}/exec/", {"command": "sleep 1", "timeout": "30"}
    )
    assert resp.status_code == 200
    assert CommandRun.objects.get().timeout_seconds == 30
    timeout = re.search(r'<input type="number"[^>]*name="timeout"[^>]*>', resp.content.decode())
    assert timeout is not None and 'value="600"' in timeout.group(0)
    # A post with errors keeps what was typed, so it can be corrected.
    bad = client_as(alice).htmx(
        "post", f"/sessions/{s.pk}/exec/", {"command": " ", "timeout": "30"}
    )
    kept = re.search(r'<input type="number"[^>]*name="timeout"[^>]*>', bad.content.decode())
    assert kept is not None and 'value="30"' in kept.group(0)


def test_ctrl_enter_is_wired_without_inline_handlers(client_as, alice, session_factory) -> None:  # type: ignore[no-untyped-def]
    s = session_factory()
    html = client_as(alice).get(f"/sessions/{s.pk}/").content.decode()
    command = re.search(r'<textarea[^>]*name="command"[^>]*>', html)
    assert command is not None and "data-submit-shortcut" in command.group(0)
    assert "onkeydown" not in command.group(0)
    assert re.search(r'<script src="[^"]*js/exec-console\.js"', html)
    assert "Ctrl+Enter" in text(client_as(alice).get(f"/sessions/{s.pk}/"))
