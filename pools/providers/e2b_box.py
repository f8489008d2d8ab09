"""Inside an E2B box: its resource metrics and a read-only view of its files.

A mixin of ``E2BProvider`` (kept apart so each module reads in one sitting). Metrics come
from the API (``Sandbox.get_metrics`` by id: no connect, so a paused box stays paused);
files need envd, reached through ``_connect_running``, which refuses a paused box rather
than resume it (a resume would start billing behind the platform's back).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pools.providers.base import FileContent, FileEntry, MetricSample, ProviderError, SandboxHandle

if TYPE_CHECKING:
    from e2b import Sandbox

MB = 1024 * 1024
# Browsing moves the box's end to at least this far from now (E2B only ever extends it).
BROWSE_KEEP_ALIVE_S = 60
READ_CHUNK = 64 * 1024


def _sandbox_id(handle: SandboxHandle | str) -> str:
    return handle.sandbox_id if isinstance(handle, SandboxHandle) else str(handle)


class E2BBox:
    """``metrics``, ``list_files`` and ``read_file`` for ``E2BProvider``."""

    # Provided by E2BProvider.
    def _opts(self) -> dict[str, Any]:
        raise NotImplementedError

    def _connect_running(self, sandbox_id: str, keep_alive: int) -> Sandbox:
        raise NotImplementedError

    def _provider_error(
        self, exc: BaseException, *, sandbox_id: str | None = None, not_found: str | None = None
    ) -> ProviderError:
        raise NotImplementedError

    def metrics(
        self, handle: SandboxHandle | str, start: datetime, end: datetime
    ) -> list[MetricSample]:
        from e2b import Sandbox  # slow import: on first use

        sandbox_id = _sandbox_id(handle)
        try:
            rows = Sandbox.get_metrics(sandbox_id, start=start, end=end, **self._opts())
        except Exception as exc:
            raise self._provider_error(exc, sandbox_id=sandbox_id) from exc
        samples = [
            MetricSample(
                at=_aware(row.timestamp),
                cpu_pct=float(row.cpu_used_pct),
                cpu_count=int(row.cpu_count),
                mem_used_mb=row.mem_used / MB,
                mem_total_mb=row.mem_total / MB,
                disk_used_mb=row.disk_used / MB,
                disk_total_mb=row.disk_total / MB,
            )
            for row in rows
        ]
        return sorted(samples, key=lambda s: s.at)

    def list_files(self, handle: SandboxHandle | str, path: str) -> list[FileEntry]:
        from e2b import FileType  # slow import: on first use

        sandbox_id = _sandbox_id(handle)
        sandbox = self._connect_running(sandbox_id, keep_alive=BROWSE_KEEP_ALIVE_S)
        try:
            info = sandbox.files.get_info(path)
            if info.type != FileType.DIR:
                raise ProviderError(f"Not a directory: {path}", permanent=True, status_code=400)
            items = sandbox.files.list(path, depth=1)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._file_error(exc, sandbox_id, path) from exc
        entries = [
            FileEntry(
                name=item.name,
                path=item.path,
                type="dir" if item.type == FileType.DIR else "file",
                size=int(item.size or 0),
            )
            for item in items
        ]
        return sorted(entries, key=lambda e: (e.type != "dir", e.name))

    def read_file(self, handle: SandboxHandle | str, path: str, max_bytes: int) -> FileContent:
        from e2b import FileType  # slow import: on first use

        sandbox_id = _sandbox_id(handle)
        sandbox = self._connect_running(sandbox_id, keep_alive=BROWSE_KEEP_ALIVE_S)
        try:
            info = sandbox.files.get_info(path)
            if info.type == FileType.DIR:
                raise ProviderError(f"Is a directory: {path}", permanent=True, status_code=400)
            size = int(info.size or 0)
            data = bytearray()
            # Streamed, and cut at max_bytes: a 10 GB file never crosses the wire whole.
            for chunk in sandbox.files.read(path, format="stream"):
                data.extend(chunk)
                if len(data) > max_bytes:
                    break
        except ProviderError:
            raise
        except Exception as exc:
            raise self._file_error(exc, sandbox_id, path) from exc
        truncated = len(data) > max_bytes or size > max_bytes
        return FileContent(path, bytes(data[:max_bytes]), max(size, len(data)), truncated)

    def _file_error(self, exc: BaseException, sandbox_id: str, path: str) -> ProviderError:
        # e2b_errors maps envd's FileNotFoundException to this not_found message.
        return self._provider_error(
            exc, sandbox_id=sandbox_id, not_found=f"No such file or directory: {path}"
        )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
