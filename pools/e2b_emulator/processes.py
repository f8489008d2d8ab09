"""Sandbox processes: real host subprocesses standing in for envd's processes.

Each command runs in its own session (``start_new_session=True``), so its process group
can be stopped (pause), continued (resume) or killed (kill, timeout) as a whole, including
anything it started in the background with ``nohup ... &``.

Output is fanned out to every open stream (``Start`` and any ``Connect`` re-attaches) via
per-stream queues; nobody listening means the output is read and dropped, as envd does.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from connectrpc.code import Code

# envd reads process output in chunks of at most 32 KiB.
CHUNK_SIZE = 32 * 1024
# After the command itself exits, how long to wait for its pipes to drain when a
# background child still holds them open (envd stops reading once the command is reaped).
EXIT_DRAIN_GRACE_S = 0.2

# E2B images run commands as "user" with home /home/user; the emulator maps that
# home onto the sandbox's private directory so `cwd="/home/user"` keeps working.
SANDBOX_HOME_ALIAS = "/home/user"
DEFAULT_USER = "user"

_SHELLS = {"bash", "sh", "dash", "zsh", "ksh"}
# Go's names for the signals a command is commonly killed with (ProcessState.String()).
_GO_SIGNAL_NAMES = {
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGPIPE: "broken pipe",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
}


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" or "stderr"
    data: bytes


@dataclass(frozen=True)
class Exit:
    exit_code: int
    exited: bool
    status: str
    error: str | None


@dataclass(frozen=True)
class Abort:
    """End the stream with this Connect error (pause, kill, deadline)."""

    code: Code
    message: str


StreamItem = Output | Exit | Abort


def exit_from_returncode(returncode: int) -> Exit:
    """Translate a Python return code into envd's end event fields."""
    if returncode >= 0:
        status = f"exit status {returncode}"
        return Exit(returncode, True, status, status if returncode else None)
    signum = -returncode
    try:
        name = _GO_SIGNAL_NAMES.get(signal.Signals(signum)) or signal.strsignal(signum)
    except ValueError:
        name = None
    status = f"signal: {(name or f'signal {signum}').lower()}"
    return Exit(-1, False, status, status)


def strip_login_flag(cmd: str, args: Sequence[str]) -> list[str]:
    """Drop ``-l``/``--login`` from a shell's options (the SDK sends ``bash -l -c <cmd>``).

    A login shell would source the *host's* /etc/profile and ~/.profile: on Debian that
    resets PATH, which would hide the template's bin directory (``donmai``) and leak the
    host's environment into the sandbox. Without the flag the shell only sees the env we
    build, which is what an E2B template's login profile amounts to.
    """
    if os.path.basename(cmd) not in _SHELLS:
        return list(args)
    result: list[str] = []
    options_done = False
    for arg in args:
        if options_done or not arg.startswith("-") or arg == "-":
            options_done = True
            result.append(arg)
            continue
        if arg == "--login":
            continue
        if not arg.startswith("--") and "l" in arg:
            arg = arg.replace("l", "")
            if arg == "-":
                continue
        result.append(arg)
        if "c" in arg and not arg.startswith("--"):
            options_done = True  # what follows is the command string and its $0, $1...
    return result


def build_env(
    base_path: str,
    home: Path,
    user: str,
    sandbox_env: Mapping[str, str],
    request_env: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """envd's order: PATH/HOME/USER/LOGNAME, then sandbox envVars, then the command's envs."""
    env = {"PATH": base_path, "HOME": str(home), "USER": user, "LOGNAME": user}
    env.update(extra or {})
    env.update(sandbox_env)
    env.update(request_env)
    return env


def resolve_cwd(requested: str | None, home: Path) -> Path:
    """Map a requested cwd to a host directory: default and relative paths live in ``home``."""
    if not requested:
        return home
    if requested == SANDBOX_HOME_ALIAS or requested.startswith(SANDBOX_HOME_ALIAS + "/"):
        return home / requested[len(SANDBOX_HOME_ALIAS) :].lstrip("/")
    path = Path(requested)
    return path if path.is_absolute() else home / path


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, owner: ManagedProcess) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Set here, not after subprocess_exec returns: output and exit callbacks may be
        # delivered before the awaiting code resumes.
        self.owner._attach(transport)  # type: ignore[arg-type]

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.owner._on_output("stdout" if fd == 1 else "stderr", raw)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.owner._on_pipe_closed(fd)

    def process_exited(self) -> None:
        self.owner._on_exit()


class ManagedProcess:
    """One command started through ``Process.Start``."""

    def __init__(
        self,
        *,
        cmd: str,
        args: list[str],
        envs: dict[str, str],
        cwd: str | None,
        tag: str | None,
    ) -> None:
        # What List reports back: the request as the client sent it.
        self.cmd, self.args, self.envs, self.cwd, self.tag = cmd, args, envs, cwd, tag
        self.pid = 0
        self.exit: Exit | None = None
        self.finished = asyncio.Event()
        self._transport: asyncio.SubprocessTransport | None = None
        # The Start stream's queue exists from the beginning: output produced while
        # spawn() is still awaiting must not be lost.
        self.start_queue: asyncio.Queue[StreamItem] = asyncio.Queue()
        self._subscribers: set[asyncio.Queue[StreamItem]] = {self.start_queue}
        self._open_pipes = {1, 2}
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_left: float | None = None

    async def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, stdin: bool) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.subprocess_exec(
            lambda: _Protocol(self),
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(cwd),
            env=env,
            start_new_session=True,
        )
        self._attach(transport)

    def _attach(self, transport: asyncio.SubprocessTransport) -> None:
        self._transport = transport
        self.pid = transport.get_pid()

    @property
    def running(self) -> bool:
        return self.exit is None

    def subscribe(self) -> asyncio.Queue[StreamItem]:
        queue: asyncio.Queue[StreamItem] = asyncio.Queue()
        if self.exit is not None:
            queue.put_nowait(self.exit)
        else:
            self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[StreamItem]) -> None:
        self._subscribers.discard(queue)

    def abort_streams(self, code: Code, message: str) -> None:
        """End every open stream of this process with a Connect error."""
        for queue in self._subscribers:
            queue.put_nowait(Abort(code, message))
        self._subscribers.clear()

    def signal(self, sig: int) -> bool:
        """Signal the command's process group; False if it is already gone."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    # -- deadline (Connect-Timeout-Ms of the Start call) ---------------------------------

    def arm_deadline(self, seconds: float) -> None:
        self._cancel_deadline()
        self._deadline = asyncio.get_running_loop().call_later(seconds, self.deadline_hit)

    def deadline_hit(self) -> None:
        """The Start deadline elapsed: envd kills the command, streams get deadline_exceeded."""
        self._deadline = None
        if self.exit is None:
            self.abort_streams(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
            self.signal(signal.SIGKILL)

    def freeze_deadline(self) -> None:
        """Pause: a frozen VM's timers do not run, so keep the remaining time aside."""
        if self._deadline is not None:
            self._deadline_left = max(
                0.0, self._deadline.when() - asyncio.get_running_loop().time()
            )
            self._cancel_deadline()

    def thaw_deadline(self) -> None:
        if self._deadline_left is not None and self.exit is None:
            self.arm_deadline(self._deadline_left)
        self._deadline_left = None

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # -- stdin ---------------------------------------------------------------------------

    def write_stdin(self, data: bytes) -> bool:
        pipe = self._transport.get_pipe_transport(0) if self._transport else None
        if pipe is None or pipe.is_closing():
            return False
        pipe.write(data)  # type: ignore[attr-defined]
        return True

    def close_stdin(self) -> bool:
        pipe = self._transport.get_pipe_transport(0) if self._transport else None
        if pipe is None:
            return False
        pipe.close()
        return True

    # -- protocol callbacks (event loop) -------------------------------------------------

    def _on_output(self, stream: str, data: bytes) -> None:
        for start in range(0, len(data), CHUNK_SIZE):
            item = Output(stream, data[start : start + CHUNK_SIZE])
            for queue in self._subscribers:
                queue.put_nowait(item)

    def _on_pipe_closed(self, fd: int) -> None:
        self._open_pipes.discard(fd)
        transport = self._transport
        if (
            not self._open_pipes
            and transport is not None
            and transport.get_returncode() is not None
        ):
            self._finish()

    def _on_exit(self) -> None:
        self._cancel_deadline()
        self._deadline_left = None
        if not self._open_pipes:
            self._finish()
        else:
            asyncio.get_running_loop().call_later(EXIT_DRAIN_GRACE_S, self._finish)

    def _finish(self) -> None:
        if self.exit is not None or self._transport is None:
            return
        returncode = self._transport.get_returncode()
        self.exit = exit_from_returncode(returncode if returncode is not None else -9)
        for queue in self._subscribers:
            queue.put_nowait(self.exit)
        self._subscribers.clear()
        # Like Go's cmd.Wait(): stop reading pipes a background child may still hold.
        self._transport.close()
        self.finished.set()

    def close(self) -> None:
        """Release the transport (the process is expected to be dead or dying)."""
        self._cancel_deadline()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
