"""Closing the terminal of ``make run`` (SIGHUP to its process group) leaves nothing behind.

The real stack: ``make run`` on free ports and a var dir of its own (SQLite, the embedded
broker), with the demo's sessions running in emulator sandboxes. Before the supervisor,
honcho started each process in a session of its own, so gunicorn, the worker, beat and the
sandboxes' runner processes outlived the SIGHUP, kept the port and consumed the next run's
queue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

from django.conf import settings

from tests.processes import Pid, alive, describe, free_port, marked, tree, wait_for

REPO = Path(__file__).resolve().parents[2]
STOP_WITHIN = 10.0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_sighup_to_make_run_leaves_no_process_of_it(tmp_path: Path) -> None:
    marker = f"stop-run-{uuid.uuid4().hex}"
    port, emulator_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    }
    env.update(
        RENSEI_VAR_DIR=str(tmp_path / "var"),
        RENSEI_RUN_ID=marker,
        NO_PROXY="127.0.0.1,localhost",
    )
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "run",
            f"PORT={port}",
            f"E2B_EMULATOR_PORT={emulator_port}",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, like a terminal's job
    )
    seen: set[Pid] = set()
    try:

        def sandboxes_running() -> bool:
            seen.update(tree(run.pid))
            return any("donmai" in _cmdline(pid) for pid, _ in tree(run.pid))

        # The demo's sessions provision into emulator sandboxes: wait for their runners.
        assert wait_for(sandboxes_running, 180, step=0.5), (tmp_path / "run.log").read_text()
        seen.update(tree(run.pid))
        names = " ".join(_cmdline(pid) for pid, _ in seen)
        for process in (
            "gunicorn",
            "celery -A rensei worker",
            "celery -A rensei beat",
            "e2b_emulator",
            "demo_webhook_receiver",
        ):
            assert process in names, names

        os.killpg(run.pid, signal.SIGHUP)

        def nothing_left() -> bool:
            return not marked(marker) and not [p for p in seen if alive(p)]

        assert wait_for(nothing_left, STOP_WITHIN), describe(
            marked(marker) | {p for p in seen if alive(p)}
        )
        run.wait(timeout=5)
        procfile = (Path(settings.BASE_DIR) / "Procfile").read_text().split("\n")
        count = len([line for line in procfile if line.strip() and not line.startswith("#")])
        assert f"SIGHUP received: stopping {count} processes" in (tmp_path / "run.log").read_text()
    finally:
        for pid, _ in marked(marker) | {p for p in seen if alive(p)}:
            os.kill(pid, signal.SIGKILL)
        log.close()
