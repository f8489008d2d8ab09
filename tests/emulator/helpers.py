"""Small helpers shared by the emulator tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 10, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy (bounded, no timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has exited already)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def pids_with_env(entry: str) -> set[int]:
    """Host pids whose environment holds ``entry`` (``NAME=value``), zombies left out.

    A box's processes live in their own PID namespace, so a pid printed inside a box
    (``echo $!``) means nothing on the host; every process of a box carries
    ``E2B_SANDBOX_ID=<id>`` in its environment, which the host can see.
    """
    wanted = entry.encode()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and pid_alive(int(name)):
            found.add(int(name))
    return found


def sandbox_pids(sandbox_id: str) -> set[int]:
    """Host pids of every live process of one sandbox (see :func:`pids_with_env`)."""
    return pids_with_env(f"E2B_SANDBOX_ID={sandbox_id}")
