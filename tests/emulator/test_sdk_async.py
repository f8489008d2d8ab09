"""The real E2B SDK's async API (``AsyncSandbox``) against the emulator.

pytest-asyncio is not a dependency, so each test drives its coroutine with asyncio.run.
"""

from __future__ import annotations

import asyncio

import pytest
from e2b import (
    AsyncSandbox,
    CommandExitException,
    SandboxNotRunningException,
    SandboxQuery,
    SandboxState,
    TimeoutException,
)

from pools.e2b_emulator.testing import RunningEmulator


def test_async_lifecycle(e2b_emulator: RunningEmulator) -> None:
    async def scenario() -> None:
        sbx = await AsyncSandbox.create("donmai-worker", timeout=60, metadata={"via": "async"})
        result = await sbx.commands.run("donmai --version")
        assert result.stdout.startswith("donmai ")
        with pytest.raises(CommandExitException) as failed:
            await sbx.commands.run("exit 7")
        assert failed.value.exit_code == 7

        handle = await sbx.commands.run("sleep 30", background=True)
        assert handle.pid in {p.pid for p in await sbx.commands.list()}

        assert await sbx.pause() is True
        with pytest.raises(TimeoutException):
            await handle.wait()  # the open stream was cancelled by the pause
        with pytest.raises(SandboxNotRunningException):
            await sbx.commands.run("true")

        resumed = await AsyncSandbox.connect(sbx.sandbox_id, timeout=60)
        assert handle.pid in {p.pid for p in await resumed.commands.list()}
        assert await resumed.commands.kill(handle.pid) is True
        assert await resumed.kill() is True
        assert await resumed.kill() is False

    asyncio.run(scenario())


def test_async_parallel_creates(e2b_emulator: RunningEmulator) -> None:
    async def scenario() -> list[str]:
        boxes = await asyncio.gather(
            *(AsyncSandbox.create("base", timeout=60, metadata={"wave": "1"}) for _ in range(4))
        )
        outputs = await asyncio.gather(*(b.commands.run("echo $E2B_SANDBOX_ID") for b in boxes))
        for box, out in zip(boxes, outputs, strict=True):
            assert out.stdout.strip() == box.sandbox_id
        listed = await AsyncSandbox.list(
            query=SandboxQuery(metadata={"wave": "1"}, state=[SandboxState.RUNNING])
        ).next_items()
        await asyncio.gather(*(b.kill() for b in boxes))
        return [s.sandbox_id for s in listed]

    assert len(set(asyncio.run(scenario()))) == 4
