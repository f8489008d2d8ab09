"""The emulator's state: sandboxes, their lifecycle and the reaper.

All sandbox state lives on the server's event loop; the test controls (controls.py)
hop onto that loop when called from a test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectrpc.code import Code

from .controls import TestControls
from .faults import CallLog, Faults
from .isolation import Box
from .metrics import METRICS_INTERVAL_S, sample_sandboxes
from .processes import ManagedProcess
from .sandbox import (
    CONCURRENCY_MESSAGE,
    DEFAULT_TIMEOUT_S,
    MAX_TIMEOUT_S,
    SANDBOX_NOT_FOUND,
    ApiError,
    Sandbox,
    new_sandbox_id,
    not_found,
)
from .templates import Template, build_registry, template_path, write_donmai_stub

log = logging.getLogger("pools.e2b_emulator")


class Emulator(TestControls):
    """Sandboxes plus knobs. Construct it, then ``await start()`` on the serving loop.

    Knobs (all optional): ``api_keys`` accepted by ``X-API-Key`` (any non-empty key when
    empty), ``max_running`` concurrent running sandboxes (429 beyond),
    ``max_running_should_retry`` (None: no header, so the SDK retries 429s; False: send
    ``Should-Retry: false``), ``latency_ms`` / ``latency_by_endpoint``, extra
    ``templates`` (objects or ``id:vcpu:memory_mb[:donmai]`` specs), ``max_timeout_s``,
    ``default_timeout_s``, ``reap_interval_s``, ``metrics_interval_s`` (one metrics sample
    per running sandbox this often, E2B's 5 s by default).

    As at E2B, a sandbox belongs to the API key (team) that created it: another key gets
    404 for it and does not see it listed. Each sandbox's processes run in their own PID
    namespace where the host allows it (isolation.py).
    """

    def __init__(
        self,
        *,
        api_keys: Iterable[str] | None = None,
        max_running: int | None = None,
        max_running_should_retry: bool | None = None,
        latency_ms: float = 0,
        latency_by_endpoint: dict[str, float] | None = None,
        templates: Iterable[Template | str] = (),
        max_timeout_s: int = MAX_TIMEOUT_S,
        default_timeout_s: int = DEFAULT_TIMEOUT_S,
        reap_interval_s: float = 0.5,
        metrics_interval_s: float = METRICS_INTERVAL_S,
    ) -> None:
        self.api_keys: set[str] = set(api_keys or ())
        self.max_running = max_running
        self.max_running_should_retry = max_running_should_retry
        self.templates = build_registry(templates)
        self.max_timeout_s = max_timeout_s
        self.default_timeout_s = default_timeout_s
        self.reap_interval_s = reap_interval_s
        self.metrics_interval_s = metrics_interval_s
        self.faults = Faults(latency_ms, latency_by_endpoint)
        self.call_log = CallLog()
        self.sandboxes: dict[str, Sandbox] = {}
        self.root: Path | None = None
        self.bin_dir: Path | None = None
        self._idempotent: dict[tuple[str, str], dict[str, Any]] = {}
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle of the emulator itself ------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="e2b-emulator-"))
            self.bin_dir = self.root / "bin"
            write_donmai_stub(self.bin_dir)
            (self.root / "sandboxes").mkdir()
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever())
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample_forever())

    async def aclose(self) -> None:
        """Kill every sandbox and remove every directory (idempotent)."""
        for task in (self._reaper, self._sampler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reaper = self._sampler = None
        procs = [p for sb in self.sandboxes.values() for p in sb.processes.values()]
        boxes = [sb.box for sb in self.sandboxes.values()]
        for sandbox_id in list(self.sandboxes):
            self._destroy(self.sandboxes[sandbox_id])
        # Give the child watcher a moment to reap what we killed, so no zombie outlives us.
        waits = [asyncio.create_task(p.finished.wait()) for p in procs]
        if waits:
            await asyncio.wait(waits, timeout=2)
            for waiting in waits:
                waiting.cancel()
        for box in boxes:
            await asyncio.to_thread(box.reap, 1)
        for task in list(self._background):
            task.cancel()
        self.close_sync()

    def close_sync(self) -> None:
        """Last-resort cleanup usable without a loop: kill groups, remove the temp root."""
        for sandbox in list(self.sandboxes.values()):
            sandbox.signal_groups(signal.SIGKILL)
            sandbox.box.kill()
            for proc in sandbox.processes.values():
                proc.close()
        for sandbox in list(self.sandboxes.values()):
            sandbox.box.reap()
        self.sandboxes.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    # -- control-plane operations (event loop) -------------------------------------------

    def validate_timeout(self, timeout: Any) -> int:
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise ApiError(400, "Timeout must be an integer number of seconds")
        if timeout <= 0:
            raise ApiError(400, "Timeout must be greater than 0")
        if timeout > self.max_timeout_s:
            if self.max_timeout_s % 3600 == 0:
                limit = f"{self.max_timeout_s // 3600} hours"
            else:
                limit = f"{self.max_timeout_s} seconds"
            raise ApiError(400, f"Timeout cannot be greater than {limit}")
        return timeout

    def _check_capacity(self) -> None:
        if self.max_running is None:
            return
        if sum(1 for sb in self.sandboxes.values() if sb.state == "running") >= self.max_running:
            headers = {}
            if self.max_running_should_retry is not None:
                headers["should-retry"] = "true" if self.max_running_should_retry else "false"
            raise ApiError(429, CONCURRENCY_MESSAGE.format(n=self.max_running), headers)

    def create(
        self,
        template_id: str,
        timeout: int | None,
        metadata: dict[str, str],
        env_vars: dict[str, str],
        auto_pause: bool = False,
        auto_resume: bool | None = None,
        owner: str = "",
    ) -> Sandbox:
        template = self.templates.get(template_id)
        if template is None:
            raise ApiError(404, f"template '{template_id}' not found")
        seconds = self.default_timeout_s if timeout is None else self.validate_timeout(timeout)
        self._check_capacity()
        assert self.root is not None, "Emulator.start() was not awaited"
        sandbox_id = new_sandbox_id()
        home = self.root / "sandboxes" / sandbox_id
        home.mkdir(parents=True)
        tmp = self.root / "tmp" / sandbox_id  # the box's /tmp, where it can have one
        tmp.mkdir(parents=True)
        tmp.chmod(0o1777)
        self._seq += 1
        now = time.monotonic()
        sandbox = Sandbox(
            sandbox_id=sandbox_id,
            template=template,
            metadata=dict(metadata),
            env_vars=dict(env_vars),
            auto_pause=auto_pause,
            auto_resume=auto_resume,
            access_token=secrets.token_urlsafe(24),
            home=home,
            started_at=datetime.now(UTC),
            seq=self._seq,
            end_mono=now + seconds,
            run_started_mono=now,
            box=Box(tmp=tmp, keep=[self.root]),
            owner=owner,
        )
        self.sandboxes[sandbox_id] = sandbox
        return sandbox

    # Idempotency keys are per team, like everything else of a team.
    def remembered(self, key: str, owner: str = "") -> dict[str, Any] | None:
        return self._idempotent.get((owner, key))

    def remember(self, key: str, body: dict[str, Any], owner: str = "") -> None:
        self._idempotent[(owner, key)] = body

    def get(self, sandbox_id: str, owner: str | None = None) -> Sandbox:
        """The sandbox, if it exists and (``owner`` given) belongs to that team; else 404."""
        # E2B also accepts the legacy "<sandboxID>-<clientID>" form.
        sandbox = self.sandboxes.get(sandbox_id) or self.sandboxes.get(sandbox_id.split("-")[0])
        if sandbox is None or (owner is not None and sandbox.owner != owner):
            raise not_found(sandbox_id)
        return sandbox

    def owned_by(self, owner: str | None) -> list[Sandbox]:
        return [s for s in self.sandboxes.values() if owner is None or s.owner == owner]

    def kill(self, sandbox_id: str, owner: str | None = None) -> None:
        self._destroy(self.get(sandbox_id, owner))

    def pause(self, sandbox_id: str, owner: str | None = None) -> None:
        sandbox = self.get(sandbox_id, owner)
        if sandbox.state == "paused":
            raise ApiError(409, f"Error pausing sandbox - sandbox '{sandbox_id}' is already paused")
        self._pause(sandbox)

    def connect(self, sandbox_id: str, timeout: int | None, owner: str | None = None) -> bool:
        """Connect semantics; returns True when a paused sandbox was resumed."""
        sandbox = self.get(sandbox_id, owner)
        seconds = self.default_timeout_s if timeout is None else self.validate_timeout(timeout)
        if sandbox.state == "running":
            sandbox.end_mono = max(sandbox.end_mono, time.monotonic() + seconds)
            return False
        self._resume(sandbox, seconds)
        return True

    def resume(
        self,
        sandbox_id: str,
        timeout: int | None,
        auto_pause: bool | None,
        owner: str | None = None,
    ) -> None:
        """The legacy ``/resume``: only for paused sandboxes."""
        sandbox = self.get(sandbox_id, owner)
        seconds = self.default_timeout_s if timeout is None else self.validate_timeout(timeout)
        if sandbox.state != "paused":
            raise ApiError(409, f'Sandbox "{sandbox_id}" is already running')
        self._resume(sandbox, seconds)
        if auto_pause is not None:
            sandbox.auto_pause = auto_pause

    def set_timeout(self, sandbox_id: str, timeout: Any, owner: str | None = None) -> None:
        sandbox = self.get(sandbox_id, owner)
        seconds = self.validate_timeout(timeout)
        if sandbox.state != "running":
            raise ApiError(409, f'Sandbox "{sandbox_id}" is not running')
        now = time.monotonic()
        lifetime_end = sandbox.run_started_mono + self.max_timeout_s
        if now >= lifetime_end:
            raise ApiError(400, "Max instance length exceeded")
        sandbox.end_mono = min(now + seconds, lifetime_end)

    def running_sandbox(self, sandbox_id: str) -> Sandbox | None:
        sandbox = self.sandboxes.get(sandbox_id)
        return sandbox if sandbox is not None and sandbox.state == "running" else None

    def add_process(self, sandbox: Sandbox, proc: ManagedProcess) -> None:
        sandbox.processes[proc.pid] = proc
        sandbox.pgids.add(proc.pid)

        async def forget_when_done() -> None:
            await proc.finished.wait()
            sandbox.processes.pop(proc.pid, None)

        self._spawn_background(forget_when_done())

    def sandbox_env(self, sandbox: Sandbox) -> tuple[str, dict[str, str]]:
        """(PATH for the template, E2B's own variables) for a process of ``sandbox``."""
        assert self.bin_dir is not None
        extra = {
            "E2B_SANDBOX": "true",
            "E2B_SANDBOX_ID": sandbox.sandbox_id,
            "E2B_TEMPLATE_ID": sandbox.template.template_id,
        }
        return template_path(sandbox.template, self.bin_dir), extra

    # -- transitions ---------------------------------------------------------------------

    def _pause(self, sandbox: Sandbox) -> None:
        for proc in sandbox.processes.values():
            # Streams do not survive a pause on E2B either; the SDK reports a timeout.
            proc.abort_streams(Code.CANCELED, "context canceled: the sandbox was paused")
            proc.freeze_deadline()
        sandbox.signal_all(signal.SIGSTOP)
        sandbox.state = "paused"

    def _resume(self, sandbox: Sandbox, seconds: int) -> None:
        self._check_capacity()
        sandbox.signal_all(signal.SIGCONT)
        for proc in sandbox.processes.values():
            proc.thaw_deadline()
        now = time.monotonic()
        sandbox.state = "running"
        sandbox.meter.at = now  # paused time is not idle time: CPU % counts from here
        sandbox.end_mono = now + seconds
        sandbox.run_started_mono = now
        if sandbox.box.isolated and sandbox.processes:
            self._spawn_background(self._unstick(sandbox))

    async def _unstick(self, sandbox: Sandbox) -> None:
        # A few looks over the next half second; stop as soon as the box pauses or dies.
        for _ in range(10):
            await asyncio.sleep(0.05)
            if self.sandboxes.get(sandbox.sandbox_id) is not sandbox:
                return
            if sandbox.state == "running":
                sandbox.unstick_launchers()

    def _destroy(self, sandbox: Sandbox) -> None:
        for proc in sandbox.processes.values():
            proc.abort_streams(Code.UNAVAILABLE, SANDBOX_NOT_FOUND)
        sandbox.signal_groups(signal.SIGKILL)
        sandbox.box.kill()
        self.sandboxes.pop(sandbox.sandbox_id, None)
        _remove_dirs(sandbox)
        procs = list(sandbox.processes.values())

        async def sweep() -> None:
            # A process that was mid-syscall when SIGKILLed may still create a file.
            if procs:
                waits = [asyncio.create_task(p.finished.wait()) for p in procs]
                await asyncio.wait(waits, timeout=2)
            for proc in procs:
                proc.close()
            await asyncio.to_thread(sandbox.box.reap)
            _remove_dirs(sandbox)

        self._spawn_background(sweep())

    def _spawn_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.metrics_interval_s)
            running = [s for s in self.sandboxes.values() if s.state == "running"]
            if not running:
                continue
            try:
                # /proc and directory walks off the loop; samples land on it.
                samples = await asyncio.to_thread(sample_sandboxes, running)
            except Exception:  # one bad pass must not end metrics for good
                log.exception("E2B emulator: taking metrics samples failed")
                continue
            for sandbox, sample in samples:
                sandbox.samples.append(sample)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval_s)
            self.reap()

    def reap(self) -> None:
        """Kill (or auto-pause) running sandboxes whose endAt has passed."""
        now = time.monotonic()
        for sandbox in list(self.sandboxes.values()):
            if sandbox.state == "running" and sandbox.end_mono <= now:
                if sandbox.auto_pause:
                    self._pause(sandbox)
                else:
                    self._destroy(sandbox)


def _remove_dirs(sandbox: Sandbox) -> None:
    """The box's home and its /tmp, on the host."""
    shutil.rmtree(sandbox.home, ignore_errors=True)
    if sandbox.box.tmp_dir is not None:
        shutil.rmtree(sandbox.box.tmp_dir, ignore_errors=True)
