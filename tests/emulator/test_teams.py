"""As at E2B, a sandbox belongs to the API key (team) that created it.

Another key gets what E2B answers for a sandbox you do not own: 404 "doesn't exist or you
don't have access to it" (the SDK's ``SandboxNotFoundException``, or False from kill), and
its listings never show it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from e2b import Sandbox, SandboxNotFoundException, SandboxQuery, SandboxState
from e2b.connection_config import ApiParams

from pools.e2b_emulator.testing import RunningEmulator, running_emulator


@pytest.fixture
def two_teams() -> Iterator[tuple[RunningEmulator, ApiParams, ApiParams]]:
    with running_emulator() as emu:
        ours: ApiParams = {"api_url": emu.url, "sandbox_url": emu.url, "api_key": "team-ours"}
        theirs: ApiParams = {**ours, "api_key": "team-theirs"}
        yield emu, ours, theirs


def _ids(query: SandboxQuery, kwargs: ApiParams) -> set[str]:
    return {s.sandbox_id for s in Sandbox.list(query=query, **kwargs).next_items()}


def test_another_key_can_neither_see_nor_touch_our_sandbox(
    two_teams: tuple[RunningEmulator, ApiParams, ApiParams],
) -> None:
    emu, ours, theirs = two_teams
    mine = Sandbox.create("base", timeout=60, metadata={"app": "rensei"}, **ours)
    frozen = Sandbox.create("base", timeout=60, metadata={"app": "rensei"}, **ours)
    frozen.pause()
    yours = Sandbox.create("base", timeout=60, metadata={"app": "rensei"}, **theirs)

    both = SandboxQuery(state=[SandboxState.RUNNING, SandboxState.PAUSED])
    assert _ids(both, theirs) == {yours.sandbox_id}
    assert _ids(SandboxQuery(metadata={"app": "rensei"}), ours) == {
        mine.sandbox_id,
        frozen.sandbox_id,
    }
    for sandbox_id in (mine.sandbox_id, frozen.sandbox_id):
        with pytest.raises(SandboxNotFoundException):
            Sandbox.get_info(sandbox_id, **theirs)
        with pytest.raises(SandboxNotFoundException):
            Sandbox.connect(sandbox_id, timeout=60, **theirs)
        with pytest.raises(SandboxNotFoundException):
            Sandbox.pause(sandbox_id, **theirs)
        with pytest.raises(SandboxNotFoundException):
            Sandbox.set_timeout(sandbox_id, 30, **theirs)
        with pytest.raises(SandboxNotFoundException):
            Sandbox.get_metrics(sandbox_id, **theirs)
        assert Sandbox.kill(sandbox_id, **theirs) is False

    # Nothing of the above reached our sandboxes.
    assert Sandbox.get_info(mine.sandbox_id, **ours).state == SandboxState.RUNNING
    assert Sandbox.get_info(frozen.sandbox_id, **ours).state == SandboxState.PAUSED
    assert sorted(emu.emulator.sandbox_ids()) == sorted(
        [mine.sandbox_id, frozen.sandbox_id, yours.sandbox_id]
    )
    statuses = {
        c.status
        for c in emu.emulator.calls
        if c.request_headers.get("x-api-key") == "team-theirs"
        and c.sandbox_id in (mine.sandbox_id, frozen.sandbox_id)
    }
    assert statuses == {404}


def test_idempotency_keys_are_per_team(
    two_teams: tuple[RunningEmulator, ApiParams, ApiParams],
) -> None:
    _, ours, theirs = two_teams
    first = Sandbox.create("base", timeout=60, idempotency_key="job-7", **ours)
    again = Sandbox.create("base", timeout=60, idempotency_key="job-7", **ours)
    other = Sandbox.create("base", timeout=60, idempotency_key="job-7", **theirs)

    assert again.sandbox_id == first.sandbox_id
    assert other.sandbox_id != first.sandbox_id
    assert Sandbox.get_info(other.sandbox_id, **theirs).sandbox_id == other.sandbox_id


def test_legacy_v1_list_is_per_team_too(
    two_teams: tuple[RunningEmulator, ApiParams, ApiParams],
) -> None:
    emu, ours, _ = two_teams
    mine = Sandbox.create("base", timeout=60, **ours)
    with httpx.Client(base_url=emu.url, trust_env=False) as client:
        listed = client.get("/sandboxes", headers={"X-API-Key": "team-theirs"}).json()
        own = client.get("/sandboxes", headers={"X-API-Key": "team-ours"}).json()
    assert listed == []
    assert [s["sandboxID"] for s in own] == [mine.sandbox_id]
