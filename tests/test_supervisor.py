"""``make run``'s supervisor: one process dying stops the run loudly; every ordinary way of
stopping it leaves nothing behind (rensei/supervisor.py, the emulator's SIGHUP)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.processes import describe, free_port, marked, wait_for

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_WITHIN = 10.0  # seconds: the bound for "nothing left behind"


def _env(marker: str) -> dict[str, str]:
    return {**os.environ, "RENSEI_RUN_ID": marker, "PYTHONUNBUFFERED": "1"}


def _supervise(
    procfile: Path, marker: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "rensei.supervisor", str(procfile)],
        cwd=REPO,
        env=_env(marker),
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def test_a_process_that_exits_stops_the_run_and_says_which_and_why(tmp_path: Path) -> None:
    marker = f"sup-{uuid.uuid4().hex}"
    procfile = tmp_path / "Procfile"
    procfile.write_text("steady: sleep 300\nquitter: sh -c 'sleep 0.5; exit 3'\n")
    done = _supervise(procfile, marker)
    assert done.returncode == 3, done.stdout
    assert "quitter exited with code 3: stopping the others" in done.stdout
    assert "exiting because quitter exited with code 3" in done.stdout
    assert wait_for(lambda: not marked(marker), STOP_WITHIN), describe(marked(marker))


def test_a_process_killed_by_a_signal_is_named_with_the_signal(tmp_path: Path) -> None:
    marker = f"sup-{uuid.uuid4().hex}"
    procfile = tmp_path / "Procfile"
    procfile.write_text("steady: sleep 300\nvictim: sh -c 'kill -9 $$'\n")
    done = _supervise(procfile, marker)
    assert done.returncode == 128 + signal.SIGKILL, done.stdout
    assert "victim was killed by SIGKILL: stopping the others" in done.stdout
    assert wait_for(lambda: not marked(marker), STOP_WITHIN), describe(marked(marker))


def test_a_procfile_without_processes_is_refused_with_a_message(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("# nothing\nnot a process line\n")
    done = _supervise(procfile, "unused")
    assert done.returncode == 2
    assert "Procfile line 2 is not 'name: command'" in done.stderr


# A child that starts a process in a session of its own and dies on SIGTERM (as the
# emulator's sandboxes are), and one that ignores SIGTERM: the worst a child can do.
DETACHER = textwrap.dedent(
    """
    import subprocess, time
    subprocess.Popen(["sleep", "300"], start_new_session=True)
    time.sleep(300)
    """
)
STUBBORN = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(sys.argv[1], "w").close()
    time.sleep(300)
    """
)


@pytest.mark.parametrize(
    ("how", "sig"),
    [("Ctrl-C", signal.SIGINT), ("terminal closed", signal.SIGHUP), ("kill make", signal.SIGTERM)],
)
def test_stopping_make_run_leaves_no_process_behind(tmp_path: Path, how: str, sig: int) -> None:
    marker = f"sup-{uuid.uuid4().hex}"
    (tmp_path / "detacher.py").write_text(DETACHER)
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    ready = tmp_path / "stubborn.ready"
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"plain: sleep 300\n"
        f"detacher: {PYTHON} {tmp_path / 'detacher.py'}\n"
        f"stubborn: {PYTHON} {tmp_path / 'stubborn.py'} {ready}\n"
    )
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t{PYTHON} -m rensei.supervisor {procfile}\n")
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(makefile), "run"],
        cwd=REPO,
        env=_env(marker),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        # Everything up: make, the supervisor, three children and the detached grandchild.
        assert wait_for(lambda: len(marked(marker)) >= 6 and ready.exists(), 30), describe(
            marked(marker)
        )
        if sig == signal.SIGTERM:
            os.kill(make.pid, sig)  # kill <make's pid>: make passes it on
        else:
            os.killpg(make.pid, sig)  # what the terminal sends to its foreground group
        assert wait_for(lambda: not marked(marker), STOP_WITHIN), (
            f"{how}: left behind {describe(marked(marker))}"
        )
        output, _ = make.communicate(timeout=5)
        assert f"{signal.Signals(sig).name} received: stopping 3 processes" in output, output
        assert "stubborn did not stop within" in output
    finally:
        for pid, _ in marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_the_emulator_kills_its_sandboxes_on_sighup(tmp_path: Path) -> None:
    from e2b import Sandbox

    port = free_port()
    emulator = subprocess.Popen(
        [PYTHON, "-m", "pools.e2b_emulator", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    # A unique duration: the sandbox's command line is our marker (its env is the sandbox's).
    marker = f"300.{random.randrange(10**8, 10**9)}"
    try:
        assert emulator.stdout is not None
        for line in emulator.stdout:
            if "listening on" in line:
                break
        url = f"http://127.0.0.1:{port}"
        sandbox = Sandbox.create(api_url=url, sandbox_url=url, api_key="e2b_test")
        sandbox.commands.run(f"sleep {marker}", background=True)
        assert wait_for(lambda: bool(marked(marker)), 10)
        os.kill(emulator.pid, signal.SIGHUP)
        assert emulator.wait(timeout=STOP_WITHIN) == 0
        assert wait_for(lambda: not marked(marker), 2), describe(marked(marker))
    finally:
        if emulator.poll() is None:
            emulator.kill()
        for pid, _ in marked(marker):
            os.kill(pid, signal.SIGKILL)
