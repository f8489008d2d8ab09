"""The embedded broker: kombu's filesystem transport with atomic writes.

kombu's stock filesystem transport creates a message file under its final name and only then
writes into it, while a consumer picks up any file whose name matches without taking the
writer's lock; a consumer that lists the folder in between reads an empty or half-written
file and the worker dies with ``JSONDecodeError`` (celery/kombu#1551). The exchange tables
under ``control_folder`` race the same way: a binding truncates the table before it locks it.

Here every file a reader can see is complete:

* a message is written under a hidden temp name (a leading dot: the reader's filter, which
  compares what follows the first dot with ``<queue>.msg``, never matches it), flushed to
  disk, then renamed to its final name. ``rename`` is atomic on one filesystem, and the temp
  file sits in the queue folder itself, so it is always the same filesystem;
* a consumer claims a message by renaming it to a hidden name in the same folder, so of two
  consumers exactly one gets it (the stock transport moved it to the system temp folder,
  which becomes a copy when that is another filesystem);
* an exchange table is rewritten the same way, under a lock file that serialises writers.

Selected by ``CELERY_BROKER_TRANSPORT`` for the default ``filesystem://`` URL (settings.py).
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

exchange_queue_t = filesystem.exchange_queue_t
# The type stubs know the virtual transport's public face only, not the filesystem one's.
_StockChannel: Any = filesystem.Channel
_StockTransport: Any = filesystem.Transport


def write_atomically(path: str | Path, data: bytes) -> None:
    """``data`` at ``path`` all at once: readers see the old file, no file, or all of it."""
    folder, name = os.path.split(os.fspath(path))
    temp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "xb", buffering=0) as f:
            f.write(data)
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise


class Channel(_StockChannel):
    """The stock channel with atomic message and exchange-table writes."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        try:
            write_atomically(path, str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(folder, f".claimed-{uuid.uuid4().hex}-{name}")
            try:
                os.rename(os.path.join(folder, name), claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            except OSError as exc:
                raise ChannelError(f"Cannot claim {name!r} from queue.") from exc
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                if self.store_processed:
                    os.replace(claimed, os.path.join(self.processed_folder, name))
                else:
                    os.remove(claimed)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {claimed!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()

    @contextmanager
    def _table_lock(self, table: Path) -> Iterator[None]:
        """Serialise writers of one exchange table (readers need no lock: writes are atomic)."""
        with open(f"{table}.lock", "ab") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _read_table(self, table: Path) -> list[Any]:
        try:
            data = table.read_bytes()
        except FileNotFoundError:
            return []
        return [exchange_queue_t(*q) for q in loads(bytes_to_str(data))] if data else []

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        table = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            with self._table_lock(table):
                queues = self._read_table(table)
                if entry not in queues:
                    queues.insert(0, entry)
                    write_atomically(table, str_to_bytes(dumps(queues)))
        except OSError as exc:
            raise ChannelError(f"Cannot open {table}") from exc

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        # The virtual channel's own bookkeeping (purge, in-memory state), then our table.
        super(_StockChannel, self)._delete(queue, exchange, routing_key, pattern, *args, **kwargs)
        table = self._exchange_file(exchange)
        entry = exchange_queue_t(routing_key or "", pattern or "", queue or "")
        if not table.exists():
            return
        with self._table_lock(table):
            queues = self._read_table(table)
            if entry in queues:
                queues.remove(entry)
                write_atomically(table, str_to_bytes(dumps(queues)))


class Transport(_StockTransport):
    """``filesystem://`` with :class:`Channel`: shares the stock transport's options."""

    Channel = Channel
    # One broker state per process, like the stock transport, but not the same object: a
    # process that uses both (the stress test) must not mix their exchange tables.
    global_state = virtual.BrokerState()
