"""Test knobs: added latency, scripted failures, and the call log.

Everything here is touched both by the server's event loop and by test code in another
thread, so each structure guards itself with a lock.

Endpoint names used by latency and faults (also ``CallRecord.endpoint``):

* control plane: ``create``, ``kill``, ``pause``, ``connect``, ``resume``, ``get``, ``list``
  (``GET /v2/sandboxes``), ``list_v1`` (``GET /sandboxes``), ``timeout``, ``metrics``,
  ``other``;
* envd: ``envd.health``, ``envd.<Method>`` for the process and filesystem services
  (``envd.Start``, ``envd.Connect``, ``envd.List``, ``envd.SendSignal``, ``envd.Stat``,
  ``envd.ListDir``, ...) and ``envd.files`` for ``/files`` uploads and downloads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

RATE_LIMIT_MESSAGE = "Rate limit exceeded"

# Request/response headers worth keeping in the call log (lower case).
LOGGED_REQUEST_HEADERS = (
    "idempotency-key",
    "x-api-key",
    "x-access-token",
    "e2b-sandbox-id",
    "connect-timeout-ms",
    "authorization",
    "user-agent",
)
LOGGED_RESPONSE_HEADERS = ("should-retry", "retry-after", "x-next-token")


@dataclass(frozen=True)
class Fault:
    """A scripted answer that replaces the real one."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class CallRecord:
    """One request the emulator received.

    ``status`` is None when the connection was dropped on purpose (``drop_next_create``)
    and ``dropped`` is then True. ``body`` is the parsed JSON request body (control plane
    only; None for envd calls or an empty body).
    """

    time: float
    plane: str  # "api" or "envd"
    endpoint: str
    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    body: Any = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    sandbox_id: str | None = None
    dropped: bool = False


class Faults:
    """Latency and scripted failures, settable at runtime from any thread."""

    def __init__(
        self,
        latency_ms: float = 0,
        latency_by_endpoint: dict[str, float] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.latency_ms = latency_ms
        self.latency_by_endpoint: dict[str, float] = dict(latency_by_endpoint or {})
        self._scripted: dict[str, deque[Fault]] = {}
        self._drop_creates = 0

    def set_latency(self, ms: float, endpoint: str | None = None) -> None:
        """Add ``ms`` of latency to every call, or only to ``endpoint`` when given."""
        with self._lock:
            if endpoint is None:
                self.latency_ms = ms
            else:
                self.latency_by_endpoint[endpoint] = ms

    def latency_for(self, endpoint: str) -> float:
        with self._lock:
            return self.latency_by_endpoint.get(endpoint, self.latency_ms)

    def fail_next(
        self,
        endpoint: str,
        count: int = 1,
        status: int = 503,
        message: str | None = None,
        retry_after: int | None = None,
        should_retry: bool | None = None,
    ) -> None:
        """Answer the next ``count`` calls to ``endpoint`` with ``status`` and a JSON error.

        ``retry_after`` adds a ``Retry-After`` header; ``should_retry`` adds
        ``Should-Retry: true|false`` (the SDK retries 429/502/503/504 by itself otherwise).
        """
        headers: list[tuple[str, str]] = []
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        if should_retry is not None:
            headers.append(("should-retry", "true" if should_retry else "false"))
        text = message or _default_message(status)
        fault = Fault(status, text, tuple(headers))
        with self._lock:
            self._scripted.setdefault(endpoint, deque()).extend([fault] * count)

    def rate_limit_next(self, endpoint: str, count: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``count`` calls with E2B's API rate-limit 429 and ``Retry-After``."""
        headers = (
            ("retry-after", str(retry_after)),
            ("ratelimit-limit", "20000"),
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", str(retry_after)),
        )
        with self._lock:
            queue = self._scripted.setdefault(endpoint, deque())
            queue.extend([Fault(429, RATE_LIMIT_MESSAGE, headers)] * count)

    def drop_next_create(self, count: int = 1) -> None:
        """Let the next ``count`` creates succeed but drop the connection before answering."""
        with self._lock:
            self._drop_creates += count

    def clear(self) -> None:
        """Forget every scripted fault and latency."""
        with self._lock:
            self._scripted.clear()
            self._drop_creates = 0
            self.latency_ms = 0
            self.latency_by_endpoint.clear()

    def take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            queue = self._scripted.get(endpoint)
            return queue.popleft() if queue else None

    def take_drop_create(self) -> bool:
        with self._lock:
            if self._drop_creates <= 0:
                return False
            self._drop_creates -= 1
            return True


def _default_message(status: int) -> str:
    return {
        429: RATE_LIMIT_MESSAGE,
        500: "Internal server error",
        502: "Bad gateway",
        503: "Service is temporarily unavailable",
        504: "Gateway timeout",
    }.get(status, f"Injected error {status}")


class CallLog:
    """Append-only list of :class:`CallRecord`, readable from tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[CallRecord] = []

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self, endpoint: str | None = None, plane: str | None = None) -> list[CallRecord]:
        with self._lock:
            return [
                r
                for r in self._records
                if (endpoint is None or r.endpoint == endpoint)
                and (plane is None or r.plane == plane)
            ]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def pick_headers(headers: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: headers[name] for name in names if name in headers}


def now() -> float:
    return time.time()
