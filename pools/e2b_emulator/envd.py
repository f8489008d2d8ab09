"""The in-sandbox daemon side: the edge proxy's checks, ``/health`` and the process service.

The process service subclasses the SDK's generated ``process_connect.Process`` and is
served by its generated ``ProcessASGIApplication``, so the Connect framing, codecs and
error encoding are exactly the ones the SDK was generated against; methods not
overridden here answer ``unimplemented``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from e2b.envd.process import process_connect, process_pb
from protobuf import Oneof

from .processes import (
    DEFAULT_USER,
    Abort,
    Exit,
    ManagedProcess,
    Output,
    build_env,
    resolve_cwd,
    strip_login_flag,
)
from .sandbox import SANDBOX_NOT_FOUND, Sandbox
from .state import Emulator

ENVD_UNAUTHORIZED = (
    "unauthorized access, please provide a valid access token or method signing if supported"
)
DEFAULT_KEEPALIVE_S = 50.0
STDIN_DISABLED = "stdin is not enabled for this process"
_SIGNALS = {
    process_pb.Signal.SIGKILL: signal.SIGKILL,
    process_pb.Signal.SIGTERM: signal.SIGTERM,
}
Event = process_pb.ProcessEvent


def _event(kind: str, value: Any) -> Event:
    return Event(event=Oneof(kind, value))  # type: ignore[arg-type]


def _end_event(end: Exit) -> Event:
    return _event(
        "end",
        Event.EndEvent(
            exit_code=end.exit_code, exited=end.exited, status=end.status, error=end.error
        ),
    )


def _user(ctx: RequestContext[Any, Any]) -> str:
    """The user from ``Authorization: Basic base64("<user>:")``; the SDK omits it by default."""
    header = ctx.request_headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return DEFAULT_USER
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConnectError(Code.UNAUTHENTICATED, "invalid authorization header") from exc
    return decoded.split(":", 1)[0] or DEFAULT_USER


class SandboxScoped:
    """What every envd service shares: the running sandbox a call is for, from the SDK's
    ``e2b-sandbox-id`` header (envd answers UNAVAILABLE for one that is gone or paused)."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator

    def _sandbox(self, ctx: RequestContext[Any, Any]) -> Sandbox:
        sandbox = self.em.running_sandbox(ctx.request_headers.get("e2b-sandbox-id", ""))
        if sandbox is None:
            raise ConnectError(Code.UNAVAILABLE, SANDBOX_NOT_FOUND)
        return sandbox


class ProcessService(SandboxScoped, process_connect.Process):
    """envd's ``process.Process`` service over host subprocesses (see processes.py)."""

    def _find(
        self, sandbox: Sandbox, selector: process_pb.ProcessSelector | None
    ) -> ManagedProcess:
        choice = selector.selector if selector is not None else None
        match choice:
            case Oneof(field="pid", value=int(pid)):
                proc = sandbox.processes.get(pid)
                if proc is not None and proc.running:
                    return proc
                raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found")
            case Oneof(field="tag", value=tag):
                for proc in sandbox.processes.values():
                    if proc.tag == tag and proc.running:
                        return proc
                raise ConnectError(Code.NOT_FOUND, f"process with tag {tag} not found")
        raise ConnectError(Code.INVALID_ARGUMENT, "a process selector (pid or tag) is required")

    async def start(
        self,
        request: process_pb.StartRequest,
        ctx: RequestContext[process_pb.StartRequest, process_pb.StartResponse],
        /,
    ) -> AsyncIterator[process_pb.StartResponse]:
        sandbox = self._sandbox(ctx)
        config = request.process
        if config is None or not config.cmd:
            raise ConnectError(Code.INVALID_ARGUMENT, "process.cmd is required")
        if request.pty is not None:
            raise ConnectError(Code.UNIMPLEMENTED, "PTY is not supported by the local E2B emulator")
        cwd = resolve_cwd(config.cwd, sandbox.home)
        if not cwd.is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"cwd '{config.cwd}' does not exist")
        base_path, extra = self.em.sandbox_env(sandbox)
        envs = dict(config.envs or {})
        env = build_env(base_path, sandbox.home, _user(ctx), sandbox.env_vars, envs, extra)
        args = list(config.args or [])
        proc = ManagedProcess(cmd=config.cmd, args=args, envs=envs, cwd=config.cwd, tag=request.tag)
        try:
            argv = sandbox.box.command([config.cmd, *strip_login_flag(config.cmd, args)], cwd)
            await proc.spawn(argv, env, cwd, stdin=bool(request.stdin))
        except OSError as exc:
            raise ConnectError(Code.INTERNAL, f"error starting process: {exc}") from exc
        self.em.add_process(sandbox, proc)
        try:
            if self.em.running_sandbox(sandbox.sandbox_id) is not sandbox:
                # Paused or killed while we were spawning: the newcomer shares that fate.
                if sandbox.sandbox_id not in self.em.sandboxes:
                    proc.signal(signal.SIGKILL)
                    raise ConnectError(Code.UNAVAILABLE, SANDBOX_NOT_FOUND)
                proc.signal(signal.SIGSTOP)
                raise ConnectError(Code.CANCELED, "context canceled: the sandbox was paused")
            if (timeout_ms := ctx.timeout_ms) is not None:
                # Killed when the deadline passes even if the client went away meanwhile.
                proc.arm_deadline(max(0.0, timeout_ms) / 1000)
            yield process_pb.StartResponse(event=_event("start", Event.StartEvent(pid=proc.pid)))
            async for event in self._follow(proc, proc.start_queue, ctx):
                yield process_pb.StartResponse(event=event)
        finally:
            proc.unsubscribe(proc.start_queue)

    async def connect(
        self,
        request: process_pb.ConnectRequest,
        ctx: RequestContext[process_pb.ConnectRequest, process_pb.ConnectResponse],
        /,
    ) -> AsyncIterator[process_pb.ConnectResponse]:
        proc = self._find(self._sandbox(ctx), request.process)
        queue = proc.subscribe()
        yield process_pb.ConnectResponse(event=_event("start", Event.StartEvent(pid=proc.pid)))
        async for event in self._follow(proc, queue, ctx):
            yield process_pb.ConnectResponse(event=event)

    async def _follow(
        self,
        proc: ManagedProcess,
        queue: asyncio.Queue[Output | Exit | Abort],
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[Event]:
        """Relay a process's events to one stream, with keepalives and its own deadline."""
        loop = asyncio.get_running_loop()
        try:
            interval = float(
                ctx.request_headers.get("keepalive-ping-interval", DEFAULT_KEEPALIVE_S)
            )
        except ValueError:
            interval = DEFAULT_KEEPALIVE_S
        interval = max(interval, 0.5)
        timeout_ms = ctx.timeout_ms
        deadline = None if timeout_ms is None else loop.time() + timeout_ms / 1000
        try:
            while True:
                wait = interval
                if deadline is not None:
                    if deadline - loop.time() <= 0:
                        raise ConnectError(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
                    wait = min(wait, deadline - loop.time())
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if deadline is None or loop.time() < deadline:
                        yield _event("keepalive", Event.KeepAlive())
                    continue
                if isinstance(item, Output):
                    data = Event.DataEvent(output=Oneof(item.stream, item.data))  # type: ignore[arg-type]
                    yield _event("data", data)
                elif isinstance(item, Exit):
                    yield _end_event(item)
                    return
                else:
                    raise ConnectError(item.code, item.message)
        finally:
            proc.unsubscribe(queue)

    async def list(
        self,
        request: process_pb.ListRequest,
        ctx: RequestContext[process_pb.ListRequest, process_pb.ListResponse],
        /,
    ) -> process_pb.ListResponse:
        sandbox = self._sandbox(ctx)
        infos = [
            process_pb.ProcessInfo(
                config=process_pb.ProcessConfig(cmd=p.cmd, args=p.args, envs=p.envs, cwd=p.cwd),
                pid=p.pid,
                tag=p.tag,
            )
            for p in sandbox.processes.values()
            if p.running
        ]
        return process_pb.ListResponse(processes=infos)

    async def send_signal(
        self,
        request: process_pb.SendSignalRequest,
        ctx: RequestContext[process_pb.SendSignalRequest, process_pb.SendSignalResponse],
        /,
    ) -> process_pb.SendSignalResponse:
        proc = self._find(self._sandbox(ctx), request.process)
        sig = _SIGNALS.get(request.signal) if request.signal is not None else None
        if sig is None:
            raise ConnectError(Code.INVALID_ARGUMENT, f"unsupported signal {request.signal}")
        # The whole group, so children of the shell die with it (no leaks in the emulator).
        if not proc.signal(sig):
            raise ConnectError(Code.NOT_FOUND, f"process with pid {proc.pid} not found")
        return process_pb.SendSignalResponse()

    async def send_input(
        self,
        request: process_pb.SendInputRequest,
        ctx: RequestContext[process_pb.SendInputRequest, process_pb.SendInputResponse],
        /,
    ) -> process_pb.SendInputResponse:
        proc = self._find(self._sandbox(ctx), request.process)
        self._write(proc, request.input)
        return process_pb.SendInputResponse()

    async def stream_input(
        self,
        request: AsyncIterator[process_pb.StreamInputRequest],
        ctx: RequestContext[process_pb.StreamInputRequest, process_pb.StreamInputResponse],
        /,
    ) -> process_pb.StreamInputResponse:
        proc: ManagedProcess | None = None
        async for message in request:
            match message.event:
                case Oneof(value=process_pb.StreamInputRequest.StartEvent() as start):
                    proc = self._find(self._sandbox(ctx), start.process)
                case Oneof(value=process_pb.StreamInputRequest.DataEvent() as data):
                    if proc is None:
                        raise ConnectError(Code.FAILED_PRECONDITION, "start event must come first")
                    self._write(proc, data.input)
        return process_pb.StreamInputResponse()

    async def close_stdin(
        self,
        request: process_pb.CloseStdinRequest,
        ctx: RequestContext[process_pb.CloseStdinRequest, process_pb.CloseStdinResponse],
        /,
    ) -> process_pb.CloseStdinResponse:
        proc = self._find(self._sandbox(ctx), request.process)
        if not proc.close_stdin():
            raise ConnectError(Code.FAILED_PRECONDITION, STDIN_DISABLED)
        return process_pb.CloseStdinResponse()

    @staticmethod
    def _write(proc: ManagedProcess, payload: process_pb.ProcessInput | None) -> None:
        match payload.input if payload is not None else None:
            case Oneof(field="stdin", value=data):
                if not proc.write_stdin(data):
                    raise ConnectError(Code.FAILED_PRECONDITION, STDIN_DISABLED)
            case _:
                raise ConnectError(Code.INVALID_ARGUMENT, "only stdin input is supported")


Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, body, raw headers


def json_response(status: int, body: dict[str, Any] | None) -> Answer:
    if body is None:
        return status, b"", []
    return status, json.dumps(body).encode(), [(b"content-type", b"application/json")]


def envd_gate(em: Emulator, sandbox_id: str, path: str, token: str | None) -> Answer | None:
    """The edge proxy's and envd's own checks; an answer to send, or None to go on."""
    sandbox = em.running_sandbox(sandbox_id)
    if sandbox is None:
        body = {"sandboxId": sandbox_id, "message": SANDBOX_NOT_FOUND, "code": 502}
        return json_response(502, body)
    if path == "/health":
        return json_response(204, None)
    if token != sandbox.access_token:
        return json_response(401, {"code": 401, "message": ENVD_UNAUTHORIZED})
    if not path.startswith(("/process.Process/", "/filesystem.Filesystem/")) and path != "/files":
        message = f"{path} is not implemented by the local E2B emulator"
        return json_response(501, {"code": 501, "message": message})
    return None
