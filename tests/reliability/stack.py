"""The real thing for fault tests: the emulator, Celery workers on Redis, and the checks that
say whether anything leaked, doubled or went missing.

``Stack`` runs an emulator in this process and any number of worker processes that share
one queue (so one can die while another goes on). Workers get a short Redis visibility
timeout and fast unacked sweeps, so a task whose worker was SIGKILLed comes back within
seconds rather than an hour.

The audit functions read the emulator's call log and state and the database:

- ``leaked_sandboxes``: sandboxes alive in the emulator that no live session owns;
- ``sessions_with_two_sandboxes``: sessions for which the emulator created more than one
  distinct sandbox (a create answered twice with one id, through E2B's idempotency key,
  is one sandbox);
- ``ledger_problems``: per session, one cost event per closed running interval with the
  interval's exact seconds, and no open interval on an ended session.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import override_settings

from billing.ledger import exact_seconds, interval_key
from billing.models import CostEvent
from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from rensei.celery import app
from sessions.models import LIVE_STATES, RunningInterval, Session
from tests.services import IN_CI
from tests.worker import WorkerProcess, set_default_queue

API_KEY = "e2b_reliability_key"
REDIS_WORKER_ENV = {
    "CELERY_VISIBILITY_TIMEOUT": "5",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
    "CELERY_UNACKED_RESTORE_THROTTLE": "1",
    "CELERY_UNACKED_MUTEX_EXPIRE": "3",
    "CELERY_WORKER_LOST_WAIT": "1",
}


def require_redis_broker() -> None:
    """Fault tests need a broker that redelivers unacknowledged tasks: Redis."""
    import pytest

    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        message = "needs CELERY_BROKER_URL=redis://… (the filesystem broker cannot redeliver)"
        if IN_CI:
            pytest.fail(message + " (CI must provide it)", pytrace=False)
        pytest.skip(message)


class SharedQueueWorker(WorkerProcess):
    """A WorkerProcess on a queue it shares with others (``WorkerProcess`` makes its own)."""

    def __init__(self, queue: str, env: dict[str, str], concurrency: int = 2) -> None:
        super().__init__(env=env, concurrency=concurrency)
        self.queue = queue
        self._ready_lines = 0
        self.ready_at: float | None = None

    def start(self, wait: bool = True) -> SharedQueueWorker:
        self._ready_lines = self.log().count(" ready.")
        self.ready_at = None
        super().start(wait=wait)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[int]:
        """The pool children of this worker's main process (Linux /proc)."""
        if not self.alive() or self.proc is None:
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except (OSError, ValueError):
            return []

    def kill_child(self, pick: Any) -> bool:
        """SIGKILL one pool child (``pick`` chooses from the pids); the main process lives
        on and forks a new one. False when there was none to kill."""
        pids = self.children()
        if not pids:
            return False
        try:
            os.kill(pick(pids), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def up_for(self) -> float:
        """Seconds since this run of the worker said it was ready (0 while booting)."""
        if self.ready_at is None:
            if not self.alive() or self.log().count(" ready.") <= self._ready_lines:
                return 0.0
            self.ready_at = time.monotonic()
        return time.monotonic() - self.ready_at


@dataclass
class Stack:
    emu: RunningEmulator
    workers: list[SharedQueueWorker]
    crash_counter: Path
    queue: str
    previous_queue: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def emulator(self) -> Any:
        return self.emu.emulator

    def arm_crashes(self, n: int) -> None:
        self.crash_counter.write_text(str(n))


@contextmanager
def running_stack(
    django_db_blocker: Any,
    *,
    workers: int = 1,
    concurrency: int = 2,
    defaults: bool = False,
    e2b_url: Callable[[str], str] | None = None,
    **worker_env: str,
) -> Iterator[Stack]:
    """An emulator plus ``workers`` worker processes sharing one queue, on Redis.

    ``defaults``: the production broker settings (an hour's visibility timeout, kombu's
    unacked sweeps), not the short ones; recovery is then the intent sweep's alone.
    ``e2b_url``: a callable taking the emulator's URL and answering the URL workers use (a
    proxy in front of it, to cut E2B off).
    """
    tmp = Path(tempfile.mkdtemp(prefix="reliability-"))
    counter = tmp / "crashes"
    counter.write_text("0")
    previous_queue = app.conf.task_default_queue
    queue = f"reliability-{uuid.uuid4().hex[:8]}"
    saved_env = {name: os.environ.get(name) for name in ("NO_PROXY", "no_proxy")}
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    with running_emulator(api_keys=[API_KEY]) as emu:
        url = e2b_url(emu.url) if e2b_url else emu.url
        urls = {"E2B_API_URL": url, "E2B_SANDBOX_URL": url}
        env = {
            **urls,
            "E2B_API_KEY": API_KEY,
            "NO_PROXY": "127.0.0.1,localhost",
            "RENSEI_FAILPOINTS": f"after-create=crash:{counter}",
            **({} if defaults else REDIS_WORKER_ENV),
            **worker_env,
        }
        procs = [SharedQueueWorker(queue, env, concurrency) for _ in range(workers)]
        overrides = override_settings(**urls, E2B_API_KEY=API_KEY)
        overrides.enable()
        try:
            with django_db_blocker.unblock():
                for proc in procs:
                    proc.start(wait=False)
                procs[0].wait_ready(timeout=90)
            yield Stack(emu, procs, counter, queue, previous_queue)
        finally:
            for proc in procs:
                proc.kill()
            overrides.disable()
            set_default_queue(previous_queue)
            _purge(queue)
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _purge(queue: str) -> None:
    """Drop what is left on the test's queue (a retry scheduled past the end of a test)."""
    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)  # type: ignore[attr-defined]
    except Exception:  # a queue never declared, or a broker already gone: nothing to drop
        pass


# --- audits --------------------------------------------------------------------------------


def created_sandboxes(emu: RunningEmulator) -> dict[str, set[str]]:
    """session id → the distinct sandbox ids the emulator created (or adopted) for it."""
    out: dict[str, set[str]] = defaultdict(set)
    for call in emu.emulator.calls_to("create"):
        if call.sandbox_id and (call.status == 201 or call.dropped):
            metadata = (call.body or {}).get("metadata") or {}
            out[str(metadata.get("rensei_session", "?"))].add(call.sandbox_id)
    return dict(out)


def sessions_with_two_sandboxes(emu: RunningEmulator) -> dict[str, set[str]]:
    return {sid: ids for sid, ids in created_sandboxes(emu).items() if len(ids) > 1}


def leaked_sandboxes(emu: RunningEmulator) -> list[str]:
    """Sandboxes still alive (running or paused) that no live session owns."""
    owned = set(
        Session.objects.filter(state__in=LIVE_STATES)
        .exclude(sandbox_id="")
        .values_list("sandbox_id", flat=True)
    )
    return [sid for sid in emu.emulator.sandbox_ids() if sid not in owned]


def ledger_problems(sessions: list[Session]) -> tuple[list[str], dict[str, Any]]:
    """One cost event per closed interval, exact seconds, nothing open on an ended session."""
    problems: list[str] = []
    closed_seconds = Decimal(0)
    for session in sessions:
        session.refresh_from_db()
        intervals = list(RunningInterval.objects.filter(session=session))
        closed = [iv for iv in intervals if iv.ended_at is not None]
        events = list(CostEvent.objects.filter(session=session, reverses__isnull=True))
        by_key = {e.idempotency_key: e for e in events}
        if len(events) != len(by_key):
            problems.append(f"session {session.pk}: duplicate cost events")
        for iv in closed:
            assert iv.ended_at is not None
            event = by_key.pop(interval_key(iv), None)
            seconds = exact_seconds(iv.ended_at - iv.started_at)
            closed_seconds += seconds
            if event is None:
                problems.append(f"session {session.pk}: interval {iv.pk} has no cost event")
            elif event.quantity_seconds != seconds:
                problems.append(
                    f"session {session.pk}: interval {iv.pk} lasted {seconds}s, "
                    f"billed {event.quantity_seconds}s"
                )
        if by_key:
            problems.append(f"session {session.pk}: cost events without an interval {by_key}")
        if session.state not in LIVE_STATES and any(iv.ended_at is None for iv in intervals):
            problems.append(f"session {session.pk} is {session.state} with an open interval")
    ids = [s.pk for s in sessions]
    ledger = CostEvent.objects.filter(session_id__in=ids).totals()
    figures = {
        "closed intervals": RunningInterval.objects.filter(
            session_id__in=ids, ended_at__isnull=False
        ).count(),
        "cost events": ledger["n"],
        "ledger seconds": str(ledger["seconds"] or 0),
        "closed interval seconds": str(closed_seconds),
    }
    if Decimal(ledger["seconds"] or 0) != closed_seconds:
        problems.append(f"ledger seconds {ledger['seconds']} ≠ closed seconds {closed_seconds}")
    return problems, figures


def wait_until(check: Any, timeout: float, interval: float = 0.2) -> bool:
    """Poll ``check`` until truthy; False at the bound (no timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
