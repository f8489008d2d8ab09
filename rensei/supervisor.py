"""``python -m rensei.supervisor [Procfile]``: run every process of the Procfile as one unit.

What ``make run`` runs. The processes live and die together:

* if one of them exits, for any reason, the supervisor says which one and how (exit code or
  signal), stops the others and exits non-zero;
* Ctrl-C, SIGTERM or SIGHUP (the terminal closing) stops them all and leaves nothing behind.

Each child starts in a session of its own, so a signal meant for ``make run`` (Ctrl-C in the
terminal, SIGHUP to its process group) reaches only the supervisor, which then stops the
children in the way each one shuts down cleanly: SIGTERM to the process, which lets the
emulator kill its sandboxes and the worker hand back what it holds. Whatever is still there
after the grace period is killed: every child's process group, and every descendant, found
through ``/proc``. The supervisor is a child subreaper, so a descendant whose parent died is
re-parented to it rather than to init, and is still found.

Every child's environment carries ``RENSEI_RUN_ID`` (one value per run) so a test can find
the processes of its own run and no others.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

GRACE_SECONDS = 7.0  # SIGTERM → SIGKILL; the whole stop stays under 10 s
PR_SET_CHILD_SUBREAPER = 36
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


@dataclass
class Child:
    name: str
    command: str
    proc: subprocess.Popen[bytes] | None = None
    status: int | None = None  # os.waitpid's raw status once reaped

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def describe_exit(self) -> str:
        assert self.status is not None
        if os.WIFSIGNALED(self.status):
            sig = os.WTERMSIG(self.status)
            return f"was killed by {signal.Signals(sig).name}"
        return f"exited with code {os.WEXITSTATUS(self.status)}"

    def exit_code(self) -> int:
        assert self.status is not None
        if os.WIFSIGNALED(self.status):
            return 128 + os.WTERMSIG(self.status)
        return os.WEXITSTATUS(self.status) or 1  # exiting at all is a failure here


def parse_procfile(text: str) -> list[Child]:
    children = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PROCFILE_LINE.match(line)
        if not match:
            raise ValueError(f"Procfile line {number} is not 'name: command': {raw!r}")
        children.append(Child(match.group(1), match.group(2)))
    if not children:
        raise ValueError("the Procfile names no process")
    return children


def shell_line(command: str) -> str:
    """The shell line for a Procfile command: ``exec`` a simple command, so the process we
    signal is the program itself and not a shell that would die and leave it running."""
    if any(op in command for op in (";", "&", "|", "\n")) or command.startswith("exec "):
        return command
    return f"exec {command}"


def descendants(root: int) -> set[int]:
    """Every live process under ``root`` (by parent pid, from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


class Supervisor:
    def __init__(self, children: list[Child], env: dict[str, str], out: IO[str]) -> None:
        self.children = children
        self.env = env
        self.out = out
        self.write_lock = threading.Lock()
        self.stop_signal: int | None = None
        self.width = max(len(c.name) for c in [*children, Child("system", "")])

    # -- output ----------------------------------------------------------------------------

    def say(self, name: str, line: str) -> None:
        with self.write_lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {line}\n")
            self.out.flush()

    def _pump(self, child: Child, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(child.name, raw.decode(errors="replace").rstrip("\n"))
        stream.close()

    # -- life cycle ------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def start(self) -> None:
        for child in self.children:
            child.proc = subprocess.Popen(
                ["/bin/sh", "-c", shell_line(child.command)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # see the module docstring
            )
            assert child.proc.stdout is not None
            threading.Thread(
                target=self._pump, args=(child, child.proc.stdout), daemon=True
            ).start()
            self.say("system", f"{child.name} started (pid {child.pid}): {child.command}")

    def reap(self) -> None:
        """Collect every exited child and orphan (we are their subreaper)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for child in self.children:
                if child.proc is not None and child.pid == pid:
                    child.status = status
                    child.proc.returncode = -1  # reaped here: Popen must not wait for it

    def running(self) -> list[Child]:
        return [c for c in self.children if c.proc is not None and c.status is None]

    def wait(self) -> Child | None:
        """Until a signal asks us to stop (None) or a child exits (that child)."""
        while self.stop_signal is None:
            self.reap()
            for child in self.children:
                if child.status is not None:
                    return child
            time.sleep(0.1)
        return None

    def stop(self) -> None:
        for child in self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while self.running() and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for child in self.running():
            self.say(
                "system", f"{child.name} did not stop within {GRACE_SECONDS:.0f} s: killing it"
            )
        # Everything left: the children's process groups and anything below us.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            left = descendants(os.getpid())
            for child in self.children:
                if child.proc is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.pid, signal.SIGKILL)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.reap()
            if not left and not self.running():
                break
            time.sleep(0.05)
        stopped = ", ".join(f"{c.name} {c.describe_exit()}" for c in self.children if c.status)
        self.say("system", f"stopped: {stopped or 'all exited cleanly'}")

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        died: Child | None = None
        try:
            self.start()
            died = self.wait()
        finally:
            if died is not None:
                self.say("system", f"{died.name} {died.describe_exit()}: stopping the others")
            elif self.stop_signal is not None:
                name = signal.Signals(self.stop_signal).name
                self.say("system", f"{name} received: stopping {len(self.running())} processes")
            self.stop()
        if died is not None:
            self.say("system", f"exiting because {died.name} {died.describe_exit()}")
            return died.exit_code()
        return 0


def become_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: orphans go to init; process groups are still killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rensei.supervisor", description=__doc__)
    parser.add_argument("procfile", nargs="?", default="Procfile")
    parser.add_argument("-p", "--port", default=os.environ.get("PORT", "8000"))
    args = parser.parse_args(argv)
    try:
        children = parse_procfile(Path(args.procfile).read_text())
    except (OSError, ValueError) as exc:
        print(f"rensei.supervisor: {exc}", file=sys.stderr)
        return 2
    env = {**os.environ, "PORT": str(args.port), "PYTHONUNBUFFERED": "1"}
    env.setdefault("RENSEI_RUN_ID", uuid.uuid4().hex)
    become_subreaper()
    return Supervisor(children, env, sys.stdout).run()


if __name__ == "__main__":
    sys.exit(main())
