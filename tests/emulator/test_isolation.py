"""Each sandbox in a PID namespace (and with a /tmp) of its own, and nothing of it outliving
the emulator.

A second emulator, in its own process, stands for every other emulator on the machine
(a ``make run`` demo, another test run) with busy sandboxes of its own.
"""

from __future__ import annotations

import logging
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b import Sandbox, TimeoutException
from e2b.connection_config import ApiParams

from pools.e2b_emulator import isolation
from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from tests.emulator.helpers import pids_with_env, sandbox_pids, wait_for
from tests.emulator.test_cli import emulator_process

# The product's launch check (sessions/jobs.py): start the runner unless one already runs.
LAUNCH_UNLESS_RUNNING = (
    'pgrep -f "[d]onmai agent run" >/dev/null || '
    'nohup donmai agent "run" >/tmp/donmai-runner.log 2>&1 &'
)


@pytest.fixture
def other_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiParams]:
    """Another emulator process with a box running a runner and a sleep."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with emulator_process("-m", "pools.e2b_emulator") as (_proc, _lines, url):
        kwargs: ApiParams = {"api_url": url, "sandbox_url": url, "api_key": "bystander"}
        busy = Sandbox.create("donmai-worker", timeout=120, **kwargs)
        busy.commands.run(
            "nohup donmai agent run >runner.log 2>&1 & nohup sleep 300 >/dev/null 2>&1 &"
        )
        wait_for(lambda: busy.commands.run('pgrep -f "[d]onmai agent run"').stdout.strip())
        yield kwargs


def test_the_host_gives_sandboxes_namespaces() -> None:
    # Root here and in CI: the fallback would make every test below meaningless.
    assert isolation.mode() is not None, "PID namespaces are unavailable on this host"


def test_pgrep_in_a_box_sees_only_that_box(
    e2b_emulator: RunningEmulator, other_emulator: ApiParams
) -> None:
    box = Sandbox.create("donmai-worker", timeout=60)
    neighbour = Sandbox.create("donmai-worker", timeout=60)
    neighbour.commands.run("nohup donmai agent run >runner.log 2>&1 &")

    # Runners and sleeps run in two other boxes, one of them in another emulator.
    assert box.commands.run('pgrep -f "[d]onmai agent run" || echo none').stdout == "none\n"
    assert box.commands.run("pgrep -x sleep || echo none").stdout == "none\n"
    # The product's launch check therefore starts this box's own runner, once.
    for _ in range(3):
        box.commands.run(LAUNCH_UNLESS_RUNNING)
    runners = box.commands.run('pgrep -f "[d]onmai agent run"').stdout.split()
    assert len(runners) == 1
    # The box's process table holds its init, its runner (and its heartbeat sleep), this ps.
    table = box.commands.run("ps -e -o pid=,args=").stdout.splitlines()
    assert "box_init.py" in table[0] and table[0].split()[0] == "1"
    assert not [row for row in table if "pytest" in row or "e2b_emulator --port" in row]
    assert e2b_emulator.emulator.process_ids(box.sandbox_id)


def test_pause_freezes_what_left_the_command_group(e2b_emulator: RunningEmulator) -> None:
    box = Sandbox.create("base", timeout=60)
    # setsid puts the counter in a session of its own, out of the command's process group.
    box.commands.run(
        "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > counter; sleep 0.05; done'"
        " >/dev/null 2>&1 &"
    )
    counter = e2b_emulator.emulator.sandbox_home(box.sandbox_id) / "counter"

    def read() -> int:
        text = counter.read_text().strip() if counter.exists() else ""
        return int(text) if text else 0

    wait_for(lambda: read() >= 3)
    box.pause()
    # Every process of the box is stopped, the setsid'd counter too (a signal lands when
    # the kernel next runs its target, hence the polling).
    wait_for(lambda: all(_state(p) == "T" for p in sandbox_pids(box.sandbox_id)))
    Sandbox.connect(box.sandbox_id, timeout=60)
    frozen = read()
    wait_for(lambda: read() > frozen)


def test_a_command_running_across_a_pause_ends_after_the_resume(
    e2b_emulator: RunningEmulator,
) -> None:
    # The command's launcher (nsenter) mirrors the command's stops; resuming must not leave
    # it stopped, or the command's end would never be reported.
    box = Sandbox.create("base", timeout=60)
    for n in range(3):
        handle = box.commands.run(f"sleep 0.5; echo done {n}", background=True)
        wait_for(lambda: box.commands.run("pgrep -x sleep || true", timeout=10).stdout.strip())
        box.pause()
        with pytest.raises(TimeoutException):
            handle.wait()  # streams do not survive a pause
        wait_for(lambda: all(_state(p) == "T" for p in sandbox_pids(box.sandbox_id)))
        Sandbox.connect(box.sandbox_id, timeout=60)
        assert box.commands.connect(handle.pid, timeout=20).wait().stdout == f"done {n}\n"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_killing_a_box_ends_everything_in_it(e2b_emulator: RunningEmulator) -> None:
    box = Sandbox.create("donmai-worker", timeout=60)
    box.commands.run(
        "setsid nohup donmai agent run >runner.log 2>&1 & nohup sleep 300 >/dev/null &"
    )
    wait_for(lambda: len(sandbox_pids(box.sandbox_id)) >= 3)
    box.kill()
    wait_for(lambda: not sandbox_pids(box.sandbox_id))


def test_no_process_survives_a_sigkilled_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    marker = f"H6_MARK={uuid.uuid4().hex}"
    name, value = marker.split("=")
    with emulator_process("-m", "pools.e2b_emulator") as (proc, _lines, url):
        kwargs: ApiParams = {"api_url": url, "sandbox_url": url, "api_key": "doomed"}
        boxes = [
            Sandbox.create("donmai-worker", timeout=120, envs={name: value}, **kwargs)
            for _ in range(3)
        ]
        boxes[0].commands.run("nohup sleep 1000 >/dev/null 2>&1 &")
        boxes[0].commands.run("sleep 1000", background=True, timeout=0)
        boxes[1].commands.run("nohup donmai agent run >runner.log 2>&1 &")
        boxes[2].commands.run("setsid sleep 1000 >/dev/null 2>&1 &")
        root = Path(boxes[0].commands.run("pwd").stdout.strip()).parent.parent
        boxes[2].pause()
        wait_for(lambda: len(pids_with_env(marker)) >= 6)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: not pids_with_env(marker))
    # A SIGKILLed emulator cannot remove its temp root: this test does.
    assert root.name.startswith("e2b-emulator-")
    shutil.rmtree(root)


def test_without_namespaces_the_emulator_warns_once_and_still_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    isolation.disable_for_tests()
    try:
        with (
            caplog.at_level(logging.WARNING, logger="pools.e2b_emulator"),
            running_emulator() as emu,
        ):
            boxes = [Sandbox.create("base", timeout=60, **emu.sdk_kwargs) for _ in range(2)]
            for box in boxes:
                assert box.commands.run("echo $E2B_SANDBOX_ID").stdout.strip() == box.sandbox_id
                handle = box.commands.run("sleep 300", background=True)
                assert handle.kill() is True
            boxes[0].commands.run("nohup sleep 300 >/dev/null 2>&1 &")
            assert boxes[0].commands.run("pgrep -x sleep").exit_code == 0
            boxes[0].kill()
        warnings = [r for r in caplog.records if "no PID namespaces" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        isolation.disable_for_tests(False)


def test_each_box_has_a_tmp_of_its_own(e2b_emulator: RunningEmulator) -> None:
    """As in a VM: the runner's log one box writes in /tmp is not another box's (the session
    page shows a box's own log), nor the host's, and it goes with the box."""
    name = f"box-tmp-{uuid.uuid4().hex[:8]}"
    boxes = [Sandbox.create("donmai-worker", timeout=60) for _ in range(2)]
    for box in boxes:
        box.commands.run(f"echo {box.sandbox_id} > /tmp/{name}")
    for box in boxes:
        # What its commands see and what envd's files API reads: the box's own file.
        assert box.commands.run(f"cat /tmp/{name}").stdout == f"{box.sandbox_id}\n"
        assert box.files.read(f"/tmp/{name}") == f"{box.sandbox_id}\n"
        assert [e.path for e in box.files.list("/tmp") if e.name == name] == [f"/tmp/{name}"]
        # The box still reaches its home and the donmai stand-in (kept at their paths).
        assert box.commands.run("which donmai && pwd").exit_code == 0
        assert box.commands.run("pwd", cwd="/home/user").exit_code == 0
    assert not Path("/tmp", name).exists()
    private = e2b_emulator.emulator.sandboxes[boxes[0].sandbox_id].box.private_tmp
    assert private is not None and (private / name).exists()
    boxes[0].kill()
    wait_for(lambda: not private.exists())
    # A file written through the files API lands in the box's /tmp too.
    boxes[1].files.write(f"/tmp/{name}.api", "written by the files API")
    assert boxes[1].commands.run(f"cat /tmp/{name}.api").stdout == "written by the files API"
    assert not Path("/tmp", f"{name}.api").exists()
