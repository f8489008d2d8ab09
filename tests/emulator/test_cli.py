"""The emulator as a foreground process: ``python -m pools.e2b_emulator`` and ``manage.py``."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2b import Sandbox
from e2b.connection_config import ApiParams

from tests.emulator.helpers import sandbox_pids, wait_for

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def emulator_process(*argv: str) -> Iterator[tuple[subprocess.Popen[str], list[str], str]]:
    """Start the emulator, wait for its URL line; yields (process, lines so far, url)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, *argv, "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        while not any("http://127.0.0.1:" in line for line in seen):
            seen.append(lines.get(timeout=30))
        url = next(word for line in seen for word in line.split() if word.startswith("http://"))
        yield proc, seen, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("argv", "stop"),
    [
        (["-m", "pools.e2b_emulator"], signal.SIGTERM),
        (["manage.py", "e2b_emulator"], signal.SIGINT),
    ],
    ids=["python-m", "manage.py"],
)
def test_foreground_server_announces_itself_and_cleans_up(
    argv: list[str], stop: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with emulator_process(*argv) as (proc, lines, url):
        assert sum("http://127.0.0.1:" in line for line in lines) == 1
        assert "NOT E2B" in "".join(lines)

        kwargs: ApiParams = {"api_url": url, "sandbox_url": url, "api_key": "e2b_cli_test"}
        sbx = Sandbox.create("donmai-worker", timeout=60, **kwargs)
        home = Path(sbx.commands.run("pwd").stdout.strip())
        sbx.commands.run("nohup donmai agent run >runner.log 2>&1 &")
        assert home.is_dir() and wait_for(lambda: sandbox_pids(sbx.sandbox_id))

        proc.send_signal(stop)
        assert proc.wait(timeout=20) == 0
        wait_for(lambda: not sandbox_pids(sbx.sandbox_id))
        assert not home.exists()
        assert not home.parent.parent.exists()  # the emulator's whole temp root


def test_refuses_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pools.e2b_emulator", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "non-loopback" in result.stderr
