"""Several producer processes and consumers on a filesystem broker, counting bad reads.

``run_stress("rensei.broker:Transport", folder)`` or ``run_stress("filesystem", folder)``
(kombu's stock transport) starts ``producers`` processes that each publish ``messages``
JSON messages to one queue, and ``consumers`` processes (one by default) that drain the
queue the way a Celery worker does (``Connection.drain_events``). Every exception out of
``drain_events`` is one time a worker would have died (``Unrecoverable error:
JSONDecodeError``); the consumer counts it and goes on. A message that never arrives, or
arrives twice, is counted too.

Plain kombu, no Django: the child processes are started with ``spawn``.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUEUE = "stress"


@dataclass
class StressResult:
    transport: str
    producers: int
    published: int = 0
    received: int = 0
    duplicates: int = 0
    missing: int = 0
    read_errors: int = 0  # exceptions out of drain_events: a worker would have died
    publish_errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failures(self) -> int:
        return self.read_errors + self.publish_errors + self.missing + self.duplicates


def _connection(transport: str, folder: Path) -> Any:
    from kombu import Connection

    queue = folder / "queue"
    return Connection(
        "filesystem://",
        transport=transport,
        transport_options={
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(folder / "control"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            # Poll hard: the race is between a write and the next look at the folder.
            "polling_interval": 0.001,
        },
    )


def _kind(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:60]}"


def _produce(transport: str, folder: str, index: int, messages: int, out: Any) -> None:
    from kombu import Exchange, Producer, Queue

    errors: dict[str, int] = {}
    sent = 0
    padding = "x" * 4096  # about the size of a Celery task message with its headers
    exchange = Exchange(QUEUE, type="direct")
    queue = Queue(QUEUE, exchange, routing_key=QUEUE)
    with _connection(transport, Path(folder)) as conn:
        producer = Producer(conn.channel(), exchange=exchange, routing_key=QUEUE)
        for n in range(messages):
            try:
                producer.publish(
                    {"id": f"{index}-{n}", "pad": padding}, serializer="json", declare=[queue]
                )
                sent += 1
            except Exception as exc:  # counted: the caller's job would have failed
                errors[_kind(exc)] = errors.get(_kind(exc), 0) + 1
    out.put(("produced", index, sent, errors))


def _consume(
    transport: str, folder: str, expected: int, seconds: float, producers_done: Any, out: Any
) -> None:
    from kombu import Consumer, Exchange, Queue

    seen: dict[str, int] = {}
    errors: dict[str, int] = {}
    exchange = Exchange(QUEUE, type="direct")
    queue = Queue(QUEUE, exchange, routing_key=QUEUE)
    deadline = time.monotonic() + seconds
    quiet_since: float | None = None

    def on_message(body: Any, message: Any) -> None:
        seen[body["id"]] = seen.get(body["id"], 0) + 1
        message.ack()

    conn = _connection(transport, Path(folder))
    with conn, Consumer(conn.channel(), [queue], callbacks=[on_message], accept=["json"]):
        while time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.2)
                quiet_since = None
            except TimeoutError:
                # Everything in and the folder quiet for a second: done.
                if len(seen) >= expected:
                    break
                quiet_since = quiet_since or time.monotonic()
                if producers_done.is_set() and time.monotonic() - quiet_since > 1.0:
                    break  # producers reported in and nothing more arrives
            except Exception as exc:  # a worker dies here; we count and carry on
                errors[_kind(exc)] = errors.get(_kind(exc), 0) + 1
    out.put(("consumed", seen, errors))


def run_stress(
    transport: str,
    folder: Path,
    *,
    producers: int = 4,
    messages: int = 1500,
    consumers: int = 1,
    seconds: float = 90,
) -> StressResult:
    """Publish ``producers * messages`` messages concurrently and drain them; count failures."""
    for sub in ("queue", "control", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    expected = producers * messages
    result = StressResult(transport=transport, producers=producers)
    started = time.monotonic()
    producers_done = ctx.Event()
    # One consumer knows when it has everything; several stop once the folder stays quiet.
    each = expected if consumers == 1 else expected + 1
    readers = [
        ctx.Process(
            target=_consume, args=(transport, str(folder), each, seconds, producers_done, out)
        )
        for _ in range(consumers)
    ]
    for proc in readers:
        proc.start()
    workers = [
        ctx.Process(target=_produce, args=(transport, str(folder), i, messages, out))
        for i in range(producers)
    ]
    for proc in workers:
        proc.start()
    reports: list[Any] = []
    consumed: list[Any] = []
    while len(consumed) < consumers or len(reports) < producers:
        item = out.get(timeout=seconds + 60)
        if item[0] == "produced":
            reports.append(item)
            if len(reports) == producers:
                producers_done.set()
        else:
            consumed.append(item)
    for proc in [*workers, *readers]:
        proc.join(timeout=30)
    for _, _, sent, errors in reports:
        result.published += sent
        for kind, n in errors.items():
            result.publish_errors += n
            key = f"publish: {kind}"
            result.error_kinds[key] = result.error_kinds.get(key, 0) + n
    seen: dict[str, int] = {}
    for _, theirs, errors in consumed:
        for message_id, n in theirs.items():
            seen[message_id] = seen.get(message_id, 0) + n
        for kind, n in errors.items():
            result.read_errors += n
            key = f"read: {kind}"
            result.error_kinds[key] = result.error_kinds.get(key, 0) + n
    result.seconds = time.monotonic() - started
    result.received = sum(seen.values())
    result.duplicates = sum(n - 1 for n in seen.values() if n > 1)
    result.missing = expected - len(seen)
    return result
