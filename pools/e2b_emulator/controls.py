"""Test controls mixed into :class:`~pools.e2b_emulator.state.Emulator`.

Tests run in their own thread while sandbox state lives on the server's event loop, so
anything touching sandboxes hops onto that loop first. Fault and latency knobs and the
call log are lock-protected and need no hop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .faults import CallLog, CallRecord, Faults

if TYPE_CHECKING:
    from .sandbox import Sandbox

T = TypeVar("T")


class TestControls:
    """Runtime knobs and back doors for tests (all callable from any thread)."""

    __test__ = False  # not a pytest test class, despite the name

    # Provided by Emulator.
    _loop: asyncio.AbstractEventLoop | None
    faults: Faults
    call_log: CallLog
    max_running: int | None
    max_running_should_retry: bool | None
    sandboxes: dict[str, Sandbox]

    if TYPE_CHECKING:

        def get(self, sandbox_id: str) -> Sandbox: ...
        def kill(self, sandbox_id: str) -> None: ...
        def _pause(self, sandbox: Sandbox) -> None: ...

    def _on_loop(self, fn: Callable[[], T]) -> T:
        loop = self._loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result(timeout=10)

    def pause_sandbox(self, sandbox_id: str) -> None:
        """Pause behind the platform's back (no API call, no call-log entry)."""
        self._on_loop(lambda: self._pause(self.get(sandbox_id)))

    def kill_sandbox(self, sandbox_id: str) -> None:
        """Kill behind the platform's back, as if E2B lost the sandbox."""
        self._on_loop(lambda: self.kill(sandbox_id))

    def expire_sandbox(self, sandbox_id: str) -> None:
        """Move endAt to now; the reaper kills (or auto-pauses) it on its next pass."""
        self._on_loop(lambda: setattr(self.get(sandbox_id), "end_mono", time.monotonic()))

    def sandbox_ids(self, state: str | None = None) -> list[str]:
        return self._on_loop(
            lambda: [s.sandbox_id for s in self.sandboxes.values() if state in (None, s.state)]
        )

    def sandbox_home(self, sandbox_id: str) -> Path:
        """The host directory standing in for the sandbox's /home/user."""
        return self._on_loop(lambda: self.get(sandbox_id).home)

    def process_ids(self, sandbox_id: str) -> set[int]:
        """Process groups started in the sandbox that still have members."""

        def alive_groups() -> set[int]:
            sandbox = self.get(sandbox_id)
            sandbox.signal_groups(0)  # signal 0 only checks; dead groups are dropped
            return set(sandbox.pgids)

        return self._on_loop(alive_groups)

    def set_max_running(self, n: int | None, should_retry: bool | None = None) -> None:
        self.max_running = n
        self.max_running_should_retry = should_retry

    @property
    def calls(self) -> list[CallRecord]:
        """A copy of the call log, oldest first."""
        return self.call_log.snapshot()

    def calls_to(self, endpoint: str) -> list[CallRecord]:
        return self.call_log.snapshot(endpoint=endpoint)

    def clear_calls(self) -> None:
        self.call_log.clear()

    def fail_next(self, endpoint: str, count: int = 1, status: int = 503, **kw: Any) -> None:
        """See :meth:`Faults.fail_next`."""
        self.faults.fail_next(endpoint, count, status, **kw)

    def rate_limit_next(self, endpoint: str, count: int = 1, retry_after: int = 1) -> None:
        self.faults.rate_limit_next(endpoint, count, retry_after)

    def drop_next_create(self, count: int = 1) -> None:
        self.faults.drop_next_create(count)

    def set_latency(self, ms: float, endpoint: str | None = None) -> None:
        self.faults.set_latency(ms, endpoint)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
