"""Per-sandbox isolation: a PID namespace and a mount namespace (for ``/proc`` and a ``/tmp``
of the box's own) per box.

An E2B sandbox is a VM: ``pgrep`` in it sees only its own processes, and nothing of it
outlives the sandbox. The emulator's boxes are host processes, so each box gets a small
init process in fresh PID and mount namespaces (``unshare --pid --fork --mount-proc``),
and every command of the box joins them (``nsenter --target <init> --pid --mount``).
Killing the init makes the kernel kill everything in the namespace, and the init dies
with the emulator however the emulator dies: ``setpriv --pdeathsig KILL`` on ``unshare``
and ``unshare --kill-child`` on the init. In its mount namespace the init mounts the box's
own directory on ``/tmp`` (box_init.py), so what one box writes there (the runner's log,
``/tmp/donmai-runner.log``) is not another box's, nor the host's.

Namespaces need root (or unprivileged user namespaces, tried next). Without them the
emulator falls back to plain host processes with a parent-death signal on each command,
and says so once in its log: a background child a command leaves behind can then
outlive the emulator, ``pgrep`` in a box sees the whole host, and its ``/tmp`` is the
host's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("pools.e2b_emulator")

# pid 1 of a box: reaps orphans, otherwise sleeps.
_INIT = Path(__file__).with_name("box_init.py")
# Ways to get the namespaces, most faithful first; None when probed and unavailable.
_MODES: dict[str, list[str]] = {
    "root": ["--pid", "--fork", "--mount-proc", "--kill-child"],
    "userns": ["--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"],
}
_mode: str | None = None
_probed = False
_forced_off = False
_warned = False


def _tools() -> dict[str, str] | None:
    found = {name: shutil.which(name) for name in ("unshare", "nsenter", "setpriv")}
    if not all(found.values()):
        return None
    return {k: v for k, v in found.items() if v}


def disable_for_tests(off: bool = True) -> None:
    """Force the fallback (plain host processes), to test it on a host that has namespaces."""
    global _forced_off, _warned
    _forced_off, _warned = off, False


def mode() -> str | None:
    """The isolation in use ("root", "userns") or None for the fallback; probed once."""
    global _mode, _probed, _warned
    if not _probed and not _forced_off:
        _probed = True
        _mode = _probe()
    found = None if _forced_off else _mode
    if found is None and not _warned:
        _warned = True
        log.warning(
            "E2B emulator: no PID namespaces for sandboxes (they need root or unprivileged "
            "user namespaces, and util-linux unshare, nsenter and setpriv); sandboxes run "
            "as plain host processes: pgrep in a box sees the whole machine, its /tmp is "
            "the host's, and a background process may outlive the emulator"
        )
    return found


def _probe() -> str | None:
    tools = _tools()
    if tools is None or not sys.platform.startswith("linux"):
        return None
    for name, flags in _MODES.items():
        box = _start(tools, flags)
        if box is None:
            continue
        init, launcher, _ = box
        try:
            joined = subprocess.run(
                [*_enter(tools, name, init, Path("/")), "/bin/true"],
                capture_output=True,
                timeout=10,
            )
        finally:
            _kill(init, launcher)
        if joined.returncode == 0:
            return name
    return None


def _start(
    tools: dict[str, str], flags: list[str], tmp: Path | None = None, keep: Iterable[Path] = ()
) -> tuple[int, subprocess.Popen[bytes], bool] | None:
    """Start an init in new namespaces: (its host pid, the unshare process, whether the box
    has ``tmp`` as its /tmp) or None. ``keep``: real host paths under /tmp the box still
    sees (``Box.kept``)."""
    argv = [tools["setpriv"], "--pdeathsig", "KILL", "--", tools["unshare"], *flags, "--"]
    argv += [sys.executable, "-S", "-I", str(_INIT)]
    if tmp is not None:
        argv += [str(tmp), *map(str, keep)]
    try:
        launcher = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
    except OSError:
        return None
    assert launcher.stdout is not None
    ready = launcher.stdout.readline()
    launcher.stdout.close()
    init = _only_child(launcher.pid) if ready in READY else None
    if init is None:
        with contextlib.suppress(ProcessLookupError):
            launcher.kill()
        launcher.wait()
        return None
    return init, launcher, ready == PRIVATE_TMP


# What box_init.py says once it is ready: with a /tmp of its own, or sharing the host's.
PRIVATE_TMP = b"ready private-tmp\n"
READY = (b"ready\n", PRIVATE_TMP)


def _under_tmp(path: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to("/tmp")


def _only_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _enter(tools: dict[str, str], name: str, init: int, cwd: Path) -> list[str]:
    argv = [tools["nsenter"], "--target", str(init)]
    if name == "userns":
        argv += ["--user", "--preserve-credentials"]
    # --wd: entering a mount namespace moves the cwd to its root otherwise.
    return [*argv, "--pid", "--mount", f"--wd={cwd}", "--"]


def _kill(init: int, launcher: subprocess.Popen[bytes]) -> None:
    # The kernel kills every process of a PID namespace when its init dies.
    with contextlib.suppress(ProcessLookupError):
        os.kill(init, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        launcher.kill()


def _ns_of(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _host_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name: state first, then ppid,
    process group…; empty once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _pgrp(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[2]) if len(fields) > 2 and fields[2].lstrip("-").isdigit() else None


def _state(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[0] if fields else None


# Stopped, traced, or no longer running (zombie, dead, gone).
NOT_RUNNING: frozenset[str | None] = frozenset({"T", "t", "Z", "X", None})
# Bounded: the pause runs on the emulator's event loop, which waits meanwhile.
STOP_SETTLE_S = 0.5


class Box:
    """One sandbox's isolation: its namespaces' init, or nothing (fallback).

    ``tmp``: the host directory the box gets as its /tmp (``private_tmp`` once it has it;
    None in the fallback, where the box's /tmp is the host's); ``keep``: host paths under
    /tmp the box must still reach at their own path."""

    def __init__(self, tmp: Path | None = None, keep: Iterable[Path] = ()) -> None:
        self.mode = mode()
        self.tools = _tools()
        self.init: int | None = None
        self.tmp_dir = tmp  # removed with the box (state.py), used or not
        self.kept = [Path(os.path.realpath(p)) for p in keep if _under_tmp(p)]
        self.private_tmp: Path | None = None
        self._launcher: subprocess.Popen[bytes] | None = None
        self._ns: str | None = None
        if self.mode is not None and self.tools is not None:
            started = _start(self.tools, _MODES[self.mode], tmp, self.kept)
            if started is not None:
                self.init, self._launcher, private = started
                self.private_tmp = tmp if private else None
                self._ns = _ns_of(self.init)
        if self.init is None:
            self.mode = None

    @property
    def isolated(self) -> bool:
        return self.init is not None

    def command(self, argv: list[str], cwd: Path) -> list[str]:
        """``argv`` wrapped to run inside the box (and to die with the emulator)."""
        if self.init is not None and self.tools is not None and self.mode is not None:
            return [*_enter(self.tools, self.mode, self.init, cwd), *argv]
        if self.tools is not None:
            return [self.tools["setpriv"], "--pdeathsig", "KILL", "--", *argv]
        return argv

    def pids(self, pgids: Iterable[int] = (), with_init: bool = False) -> list[int]:
        """Host pids of the box's processes (its init only if asked); by process group in
        the fallback."""
        groups = set(pgids)
        found = []
        for pid in _host_pids():
            if pid == self.init and not with_init:
                continue
            if self._ns is not None:
                if _ns_of(pid) == self._ns:
                    found.append(pid)
            elif groups and _pgrp(pid) in groups:
                found.append(pid)
        return found

    def signal_all(self, sig: int, pgids: Iterable[int] = ()) -> None:
        groups = set(pgids)
        done: set[int] = set()
        # A process may fork between the scan and the signal: scan again until no newcomer
        # shows up (bounded), so a pause leaves nothing of the box running.
        for _ in range(5):
            fresh = set(self.pids(groups)) - done
            if not fresh:
                break
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            done |= fresh
        if sig == signal.SIGSTOP:
            self._settle_stopped(groups)

    def _settle_stopped(self, groups: set[int]) -> None:
        """Return once every process of the box is stopped (bounded): a child forked while
        its parent's stop was pending does not inherit the pending stop, and on a busy
        machine it can be born after the last scan. Stragglers are stopped again."""
        deadline = time.monotonic() + STOP_SETTLE_S
        while True:
            running = [pid for pid in self.pids(groups) if _state(pid) not in NOT_RUNNING]
            if not running or time.monotonic() > deadline:
                return
            for pid in running:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
            time.sleep(0.005)

    def kill(self) -> None:
        """End the box: every process in it dies with its init."""
        if self.init is not None and self._launcher is not None:
            _kill(self.init, self._launcher)

    def reap(self, timeout: float = 2) -> None:
        if self._launcher is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._launcher.wait(timeout)
