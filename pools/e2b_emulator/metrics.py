"""Sandbox metrics, as ``GET /sandboxes/{id}/metrics`` serves them (``Sandbox.get_metrics``).

E2B samples each running sandbox every 5 s: CPU use across its vCPUs, memory and disk.
Here a sample is measured from the box's own processes (their ``/proc/<pid>/stat``: CPU
ticks and resident memory) and the size of its directory, against the template's size.
A process that ended between two samples takes its last ticks with it, so a sample may
read a little low, never high.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sandbox import Sandbox

METRICS_INTERVAL_S = 5.0
MIB = 1024 * 1024
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Meter:
    """What the previous sample saw, to turn CPU ticks into a percentage."""

    ticks: dict[int, int] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


def _stat(pid: int) -> tuple[int, int] | None:
    """(utime + stime ticks, resident bytes) of one process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the ")" of comm: state is field 3 of stat(5), so utime (14) is index 11 here.
    return int(fields[11]) + int(fields[12]), int(fields[21]) * _PAGE


def directory_size(root: Path) -> int:
    """Bytes of the files under ``root`` (not following symlinks)."""
    total = 0
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            with contextlib.suppress(OSError):  # gone meanwhile
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def sample(sandbox: Sandbox, now: datetime | None = None) -> dict[str, Any]:
    """One metrics sample of ``sandbox`` in E2B's ``SandboxMetric`` JSON shape."""
    meter = sandbox.meter
    mono = time.monotonic()
    ticks: dict[int, int] = {}
    memory = 0
    # The init counts, as a VM's own system does: an idle box still uses some memory.
    for pid in sandbox.box.pids(sandbox.pgids, with_init=True):
        measured = _stat(pid)
        if measured is not None:
            ticks[pid], rss = measured
            memory += rss
    used = sum(t - meter.ticks.get(pid, 0) for pid, t in ticks.items())
    elapsed = max(mono - meter.at, 1e-3)
    cpus = sandbox.template.cpu_count
    percent = min(100.0, max(0.0, used / _TICKS_PER_S / (elapsed * cpus) * 100))
    meter.ticks, meter.at = ticks, mono
    stamp = (now or datetime.now(UTC)).replace(microsecond=0)
    return {
        "timestamp": stamp.isoformat().replace("+00:00", "Z"),
        "timestampUnix": int(stamp.timestamp()),
        "cpuCount": cpus,
        "cpuUsedPct": round(percent, 2),
        "memUsed": memory,
        "memTotal": sandbox.template.memory_mb * MIB,
        "memCache": 0,
        "diskUsed": directory_size(sandbox.home),
        "diskTotal": sandbox.template.disk_size_mb * MIB,
    }


def sample_sandboxes(sandboxes: list[Sandbox]) -> list[tuple[Sandbox, dict[str, Any]]]:
    return [(sandbox, sample(sandbox)) for sandbox in sandboxes]


def select(samples: list[dict[str, Any]], start: int | None, end: int | None) -> list[Any]:
    """The samples with ``start <= timestampUnix <= end`` (unix seconds, both optional)."""
    return [
        s
        for s in samples
        if (start is None or s["timestampUnix"] >= start)
        and (end is None or s["timestampUnix"] <= end)
    ]
