"""Finding the processes of one run on a shared machine: by a marker, never by name.

A demo may be running beside the tests, so "is anything left?" means "is any process of
*this* run left": one whose environment or command line carries the run's marker, or one of
the pids seen in its tree (matched with its start time, so a reused pid is not mistaken).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

Pid = tuple[int, str]  # pid and its start time (field 22 of /proc/<pid>/stat)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def alive(proc: Pid) -> bool:
    fields = _stat(proc[0])
    return fields is not None and fields[0] != "Z" and fields[19] == proc[1]


def tree(root: int) -> set[Pid]:
    """``root`` and every live descendant, by parent pid."""
    parents: dict[int, tuple[int, str]] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and fields[0] != "Z":
            parents[pid] = (int(fields[1]), fields[19])
    found = {root}
    while True:
        more = {pid for pid, (ppid, _) in parents.items() if ppid in found} - found
        if not more:
            break
        found |= more
    return {(pid, parents[pid][1]) for pid in found if pid in parents}


def marked(marker: str) -> set[Pid]:
    """Live processes whose environment or command line contains ``marker``."""
    needle = marker.encode()
    out: set[Pid] = set()
    for pid in _pids():
        if pid == os.getpid():
            continue
        for part in ("environ", "cmdline"):
            try:
                data = Path(f"/proc/{pid}/{part}").read_bytes()
            except OSError:
                continue
            fields = _stat(pid)
            if needle in data and fields is not None and fields[0] != "Z":
                out.add((pid, fields[19]))
                break
    return out


def describe(procs: set[Pid]) -> list[str]:
    out = []
    for pid, _ in sorted(procs):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "?"
        out.append(f"{pid}: {cmd[:120]}")
    return out


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()
