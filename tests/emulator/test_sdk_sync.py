"""The real, unmodified E2B Python SDK (sync API) against the emulator.

The ``e2b_emulator`` fixture points the SDK at the emulator through E2B_API_URL,
E2B_SANDBOX_URL and E2B_API_KEY, so most calls below carry no connection kwargs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from e2b import (
    CommandExitException,
    InvalidArgumentException,
    Sandbox,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxQuery,
    SandboxState,
    TimeoutException,
)

from pools.e2b_emulator.testing import RunningEmulator
from tests.emulator.helpers import pid_alive, wait_for


@pytest.fixture
def sandbox(e2b_emulator: RunningEmulator) -> Iterator[Sandbox]:
    sbx = Sandbox.create("base", timeout=60)
    yield sbx
    sbx.kill()


def test_create_keeps_template_timeout_env_vars_and_metadata(
    e2b_emulator: RunningEmulator,
) -> None:
    sbx = Sandbox.create(
        "donmai-worker", timeout=30, envs={"GREETING": "hello"}, metadata={"owner": "tests"}
    )

    info = sbx.get_info()
    assert len(sbx.sandbox_id) == 20 and sbx.sandbox_id.isalnum()
    assert info.template_id == "donmai-worker"
    assert info.metadata == {"owner": "tests"}
    assert (info.cpu_count, info.memory_mb) == (2, 1024)
    assert info.state == SandboxState.RUNNING
    assert 25 < (info.end_at - info.started_at).total_seconds() <= 31
    assert sbx.commands.run("echo $GREETING").stdout == "hello\n"
    [create] = e2b_emulator.emulator.calls_to("create")
    assert create.body["timeout"] == 30 and create.status == 201


def test_run_returns_output_and_nonzero_exit_raises(sandbox: Sandbox) -> None:
    result = sandbox.commands.run("echo out; echo err >&2")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 0)

    with pytest.raises(CommandExitException) as failed:
        sandbox.commands.run("echo partial; echo broken >&2; exit 3")
    assert failed.value.exit_code == 3
    assert failed.value.stdout == "partial\n"
    assert failed.value.stderr == "broken\n"
    assert failed.value.error == "exit status 3"


def test_command_env_and_cwd(e2b_emulator: RunningEmulator) -> None:
    sbx = Sandbox.create("base", timeout=60, envs={"A": "sandbox", "B": "sandbox"})
    sbx.commands.run("mkdir -p work/deeper")

    result = sbx.commands.run("echo $A $B; pwd", envs={"B": "command"}, cwd="work/deeper")
    a_b, cwd = result.stdout.splitlines()
    assert a_b == "sandbox command"
    assert cwd == str(e2b_emulator.emulator.sandbox_home(sbx.sandbox_id) / "work" / "deeper")
    assert sbx.commands.run("pwd", cwd="/home/user/work").stdout.strip().endswith("/work")
    with pytest.raises(InvalidArgumentException, match="cwd 'missing' does not exist"):
        sbx.commands.run("pwd", cwd="missing")


def test_command_timeout_raises_and_kills_the_command(sandbox: Sandbox) -> None:
    with pytest.raises(TimeoutException):
        sandbox.commands.run("sleep 30", timeout=1)
    wait_for(lambda: not any(p.args[-1:] == ["sleep 30"] for p in sandbox.commands.list()))


def test_background_command_list_and_kill(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 30", background=True)

    listed = {p.pid: p for p in sandbox.commands.list()}
    assert listed[handle.pid].cmd == "/bin/bash"
    assert listed[handle.pid].args[-1] == "sleep 30"
    assert handle.kill() is True
    with pytest.raises(CommandExitException):
        handle.wait()
    wait_for(lambda: handle.pid not in {p.pid for p in sandbox.commands.list()})
    assert sandbox.commands.kill(handle.pid) is False


def test_pause_twice_and_commands_while_paused(sandbox: Sandbox) -> None:
    assert sandbox.pause() is True
    assert sandbox.pause() is False
    assert sandbox.get_info().state == SandboxState.PAUSED
    assert sandbox.is_running() is False
    with pytest.raises(SandboxNotRunningException):
        sandbox.commands.run("true")
    with pytest.raises(SandboxException):
        sandbox.set_timeout(30)  # 409: only running sandboxes have a timer


def test_connect_resumes_and_background_process_keeps_its_state(
    e2b_emulator: RunningEmulator, sandbox: Sandbox
) -> None:
    # A counter that lives only in the shell's memory and is dumped to a file.
    sandbox.commands.run(
        "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > counter; sleep 0.05; done'"
        " >/dev/null 2>&1 &"
    )
    counter = e2b_emulator.emulator.sandbox_home(sandbox.sandbox_id) / "counter"

    def read() -> int:
        text = counter.read_text().strip() if counter.exists() else ""
        return int(text) if text else 0

    wait_for(lambda: read() >= 3)
    sandbox.pause()
    frozen = read()
    assert frozen >= 3

    resumed = Sandbox.connect(sandbox.sandbox_id, timeout=60)
    assert resumed.get_info().state == SandboxState.RUNNING
    assert e2b_emulator.emulator.calls_to("connect")[-1].status == 201  # resumed, not started
    wait_for(lambda: read() > frozen)
    assert Sandbox.connect(sandbox.sandbox_id).sandbox_id == sandbox.sandbox_id
    assert e2b_emulator.emulator.calls_to("connect")[-1].status == 200  # already running


def test_list_by_state_and_by_metadata_with_spaces_and_ampersands(
    e2b_emulator: RunningEmulator,
) -> None:
    tricky = {"team name": "R&D ops", "a&b=c": "x y"}
    wanted = Sandbox.create("base", timeout=60, metadata=tricky)
    other = Sandbox.create("base", timeout=60, metadata={"team name": "R"})
    other.pause()

    def ids(query: SandboxQuery) -> set[str]:
        return {s.sandbox_id for s in Sandbox.list(query=query).next_items()}

    assert ids(SandboxQuery(metadata=tricky)) == {wanted.sandbox_id}
    assert ids(SandboxQuery(metadata={"team name": "R"})) == {other.sandbox_id}
    assert ids(SandboxQuery(state=[SandboxState.PAUSED])) == {other.sandbox_id}
    assert ids(SandboxQuery(state=[SandboxState.RUNNING])) == {wanted.sandbox_id}
    both = [SandboxState.RUNNING, SandboxState.PAUSED]
    assert ids(SandboxQuery(state=both)) == {wanted.sandbox_id, other.sandbox_id}


def test_list_pagination_with_limit_and_next_token(e2b_emulator: RunningEmulator) -> None:
    created = {
        Sandbox.create("base", timeout=60, metadata={"batch": "p"}).sandbox_id for _ in "abc"
    }

    pages = Sandbox.list(query=SandboxQuery(metadata={"batch": "p"}), limit=2)
    first = pages.next_items()
    assert len(first) == 2 and pages.has_next
    second = pages.next_items()
    assert len(second) == 1 and not pages.has_next
    assert {s.sandbox_id for s in first + second} == created
    assert e2b_emulator.emulator.calls_to("list")[-1].query.count("nextToken=") == 1


def test_set_timeout_moves_end_at(sandbox: Sandbox) -> None:
    sandbox.set_timeout(3600)
    info = sandbox.get_info()
    assert (info.end_at - info.started_at).total_seconds() > 3000


def test_expiry_kills_the_sandbox(e2b_emulator: RunningEmulator) -> None:
    sbx = Sandbox.create("base", timeout=1)
    wait_for(lambda: not sbx.is_running())
    with pytest.raises(SandboxNotFoundException):
        sbx.get_info()


def test_expiry_pauses_with_auto_pause(e2b_emulator: RunningEmulator) -> None:
    sbx = Sandbox.create("base", timeout=1, lifecycle={"on_timeout": "pause"})
    assert sbx.get_info().lifecycle == {"on_timeout": "pause", "auto_resume": False}
    wait_for(lambda: sbx.get_info().state == SandboxState.PAUSED)
    assert Sandbox.connect(sbx.sandbox_id, timeout=60).is_running()
    sbx.kill()


def test_kill_twice_then_everything_is_gone(e2b_emulator: RunningEmulator) -> None:
    sbx = Sandbox.create("base", timeout=60)
    assert sbx.kill() is True
    assert sbx.kill() is False
    assert Sandbox.kill(sbx.sandbox_id) is False
    with pytest.raises(SandboxNotFoundException):
        sbx.get_info()
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect(sbx.sandbox_id)
    with pytest.raises(SandboxNotRunningException):
        sbx.commands.run("true")


def _has_heartbeat(log: Path) -> bool:
    return log.exists() and "heartbeat" in log.read_text()


def runner_pids(emu: RunningEmulator, sandbox_id: str) -> set[int]:
    """The `donmai agent run` processes of this one box (its process groups), never the host's:
    emulated commands are host processes, so a bare pgrep would see every box on the machine."""
    found: set[int] = set()
    for pgid in emu.emulator.process_ids(sandbox_id):
        listed = subprocess.run(
            ["pgrep", "-g", str(pgid), "-f", "donmai agent run"], capture_output=True, text=True
        )
        found.update(int(pid) for pid in listed.stdout.split())
    return found


def test_donmai_is_on_path_only_in_donmai_worker(e2b_emulator: RunningEmulator) -> None:
    worker = Sandbox.create("donmai-worker", timeout=60)
    base = Sandbox.create("base", timeout=60)

    assert worker.commands.run("which donmai").stdout.strip().endswith("/donmai")
    assert "local emulator stand-in" in worker.commands.run("donmai --version").stdout
    with pytest.raises(CommandExitException):
        base.commands.run("which donmai")

    # A bystander runner in another box stands for every other runner on this host (a `make
    # run` demo, another test run): killing this box must end its runner and only its runner.
    bystander = Sandbox.create("donmai-worker", timeout=60)
    for box in (worker, bystander):
        box.commands.run("nohup donmai agent run >runner.log 2>&1 &")
        log = e2b_emulator.emulator.sandbox_home(box.sandbox_id) / "runner.log"
        wait_for(partial(_has_heartbeat, log))
    pids = runner_pids(e2b_emulator, worker.sandbox_id)
    others = runner_pids(e2b_emulator, bystander.sandbox_id)
    assert pids and others and not pids & others
    worker.kill()
    wait_for(lambda: not any(pid_alive(pid) for pid in pids))
    assert all(pid_alive(pid) for pid in others)
    bystander.kill()


def test_idempotency_key_returns_the_same_sandbox(e2b_emulator: RunningEmulator) -> None:
    first = Sandbox.create("base", timeout=60, idempotency_key="job-42")
    again = Sandbox.create("base", timeout=60, idempotency_key="job-42")

    assert again.sandbox_id == first.sandbox_id
    assert e2b_emulator.emulator.sandbox_ids() == [first.sandbox_id]
    keys = [c.request_headers["idempotency-key"] for c in e2b_emulator.emulator.calls_to("create")]
    assert keys == ["job-42", "job-42"]


def test_behind_the_back_pause_kill_and_expiry(e2b_emulator: RunningEmulator) -> None:
    emulator = e2b_emulator.emulator
    sbx = Sandbox.create("base", timeout=60)
    handle = sbx.commands.run("sleep 30", background=True)
    assert emulator.process_ids(sbx.sandbox_id) == {handle.pid}

    emulator.pause_sandbox(sbx.sandbox_id)
    assert sbx.get_info().state == SandboxState.PAUSED
    with pytest.raises(TimeoutException):
        handle.wait()  # streams do not survive a pause

    Sandbox.connect(sbx.sandbox_id, timeout=60)
    handle = sbx.commands.connect(handle.pid)
    emulator.kill_sandbox(sbx.sandbox_id)
    with pytest.raises(SandboxNotRunningException):
        handle.wait()
    with pytest.raises(SandboxNotFoundException):
        sbx.get_info()

    doomed = Sandbox.create("base", timeout=3600)
    emulator.expire_sandbox(doomed.sandbox_id)
    wait_for(lambda: doomed.sandbox_id not in emulator.sandbox_ids())
    assert [c.endpoint for c in emulator.calls if c.plane == "api"] == [
        "create",
        "get",
        "connect",
        "get",
        "create",
    ]


def test_stdin_send_stream_and_close(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("cat", background=True, stdin=True)
    sandbox.commands.send_stdin(handle.pid, "hello ")
    sandbox.commands.stream_input(handle.pid, ["stream", "ed\n"])
    sandbox.commands.close_stdin(handle.pid)
    assert handle.wait().stdout == "hello streamed\n"
