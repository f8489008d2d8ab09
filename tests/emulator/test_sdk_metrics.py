"""``Sandbox.get_metrics`` (sync and async) against the emulator.

Samples are measured from each box's own processes and directory. The emulator samples
every 5 s like E2B; these tests ask for a faster beat so they need not wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from e2b import AsyncSandbox, Sandbox, SandboxException, SandboxMetrics, SandboxNotFoundException
from e2b.connection_config import ApiParams

from pools.e2b_emulator import Emulator
from pools.e2b_emulator.testing import running_emulator
from tests.emulator.helpers import wait_for

BUSY = "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &"
IDLE = "nohup sleep 300 >/dev/null 2>&1 &"


@pytest.fixture
def fast() -> Iterator[ApiParams]:
    with running_emulator(metrics_interval_s=0.2) as emu:
        yield emu.sdk_kwargs


def _latest(sbx: Sandbox) -> SandboxMetrics | None:
    samples = sbx.get_metrics()
    return samples[-1] if samples else None


def _sample_where(sbx: Sandbox, ok: Callable[[SandboxMetrics], bool]) -> SandboxMetrics:
    """The first latest sample that satisfies ``ok`` (polled, 30 s at most)."""

    def check() -> SandboxMetrics | None:
        latest = _latest(sbx)
        return latest if latest is not None and ok(latest) else None

    found = wait_for(check, 30)
    assert found is not None
    return found


def test_e2b_samples_every_five_seconds_by_default() -> None:
    assert Emulator().metrics_interval_s == 5


def test_busy_box_reads_busy_and_idle_box_reads_idle(fast: ApiParams) -> None:
    busy = Sandbox.create("base", timeout=60, **fast)
    idle = Sandbox.create("donmai-worker", timeout=60, **fast)
    busy.commands.run(BUSY)
    idle.commands.run(IDLE)

    # Each box is measured alone: a loop on one of 2 vCPUs is up to 50 %, a sleep is ~0.
    hot = _sample_where(busy, lambda m: m.cpu_used_pct > 10)
    cold = _sample_where(idle, lambda m: m.cpu_used_pct < 2)
    assert hot.cpu_used_pct <= 100
    assert (hot.cpu_count, hot.mem_total) == (2, 512 * 1024 * 1024)
    assert (cold.cpu_count, cold.mem_total) == (2, 1024 * 1024 * 1024)
    assert 0 < hot.mem_used < hot.mem_total and 0 < cold.mem_used < cold.mem_total
    assert hot.disk_total == 10240 * 1024 * 1024
    stamps = [m.timestamp for m in busy.get_metrics()]
    assert stamps == sorted(stamps) and stamps[-1] <= datetime.now(UTC)


def test_disk_used_follows_the_box_directory(fast: ApiParams) -> None:
    box = Sandbox.create("base", timeout=60, **fast)
    box.files.write("big.bin", b"x" * 300_000)
    _sample_where(box, lambda m: m.disk_used >= 300_000)
    box.files.remove("big.bin")
    _sample_where(box, lambda m: m.disk_used < 300_000)


def test_start_and_end_select_samples(fast: ApiParams) -> None:
    box = Sandbox.create("base", timeout=60, **fast)
    wait_for(lambda: len(box.get_metrics()) >= 3, 30)
    now = datetime.now(UTC)
    assert box.get_metrics(start=now + timedelta(hours=1)) == []
    assert box.get_metrics(end=now - timedelta(hours=1)) == []
    first = box.get_metrics()[0].timestamp
    assert all(m.timestamp >= first for m in box.get_metrics(start=first))
    with pytest.raises(SandboxException, match="start must be before end"):
        box.get_metrics(start=now, end=now - timedelta(minutes=1))
    box.kill()
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_metrics(box.sandbox_id, **fast)


def test_async_get_metrics(fast: ApiParams) -> None:
    async def scenario() -> list[SandboxMetrics]:
        box = await AsyncSandbox.create("base", timeout=60, **fast)
        await box.commands.run(BUSY)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            samples = await box.get_metrics()
            if (
                samples and samples[-1].cpu_used_pct > 10
            ) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        await box.kill()
        with pytest.raises(SandboxNotFoundException):
            await AsyncSandbox.get_metrics(box.sandbox_id, **fast)
        return samples

    samples = asyncio.run(scenario())
    assert samples and samples[-1].cpu_used_pct > 10 and samples[-1].cpu_count == 2
