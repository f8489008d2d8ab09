"""Test knobs of the emulator (keys, concurrency, scripted faults) and its cleanup."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from e2b import AuthenticationException, RateLimitException, Sandbox

from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from tests.emulator.helpers import pid_alive, pids_with_env, sandbox_pids, wait_for


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's transport honours HTTP(S)_PROXY even for 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_wrong_api_key_is_refused() -> None:
    with running_emulator(api_keys=["e2b_right"]) as emu:
        kwargs = emu.sdk_kwargs
        assert kwargs["api_key"] == "e2b_right"
        Sandbox.create("base", timeout=60, **kwargs).kill()
        kwargs["api_key"] = "e2b_wrong"
        with pytest.raises(AuthenticationException):
            Sandbox.create("base", timeout=60, **kwargs)
        [refused] = [c for c in emu.emulator.calls if c.status == 401]
        assert refused.request_headers["x-api-key"] == "e2b_wrong"


def test_concurrency_limit_answers_e2b_429() -> None:
    with running_emulator(max_running=1, max_running_should_retry=False) as emu:
        first = Sandbox.create("base", timeout=60, **emu.sdk_kwargs)
        with pytest.raises(RateLimitException, match="maximum number of concurrent"):
            Sandbox.create("base", timeout=60, **emu.sdk_kwargs)
        rejected = emu.emulator.calls_to("create")[1:]
        assert [(c.status, c.response_headers) for c in rejected] == [
            (429, {"should-retry": "false"})
        ]

        # Paused sandboxes do not count; resuming one does.
        first.pause()
        second = Sandbox.create("base", timeout=60, **emu.sdk_kwargs)
        with pytest.raises(RateLimitException):
            Sandbox.connect(first.sandbox_id, **emu.sdk_kwargs)
        second.kill()
        assert Sandbox.connect(first.sandbox_id, **emu.sdk_kwargs).is_running()


def test_concurrency_429_without_header_is_retried_by_the_sdk() -> None:
    with running_emulator(max_running=0) as emu:
        with pytest.raises(RateLimitException):
            Sandbox.create("base", timeout=60, **emu.sdk_kwargs)
        assert [c.status for c in emu.emulator.calls_to("create")] == [429] * 4


def test_scripted_503s_then_success(e2b_emulator: RunningEmulator) -> None:
    e2b_emulator.emulator.fail_next("create", count=2, status=503)
    sbx = Sandbox.create("base", timeout=60)
    assert [c.status for c in e2b_emulator.emulator.calls_to("create")] == [503, 503, 201]
    assert e2b_emulator.emulator.sandbox_ids() == [sbx.sandbox_id]


def test_scripted_rate_limit_with_retry_after(e2b_emulator: RunningEmulator) -> None:
    e2b_emulator.emulator.rate_limit_next("create", count=1, retry_after=0)
    Sandbox.create("base", timeout=60)
    first, second = e2b_emulator.emulator.calls_to("create")
    assert (first.status, first.response_headers["retry-after"]) == (429, "0")
    assert second.status == 201


def test_dropped_create_leaves_a_sandbox_that_the_same_key_finds(
    e2b_emulator: RunningEmulator,
) -> None:
    e2b_emulator.emulator.drop_next_create()
    with pytest.raises(httpx.TransportError):
        Sandbox.create("base", timeout=60, idempotency_key="lost-answer")
    [orphan] = e2b_emulator.emulator.sandbox_ids()
    assert e2b_emulator.emulator.calls_to("create")[0].dropped

    retried = Sandbox.create("base", timeout=60, idempotency_key="lost-answer")
    assert retried.sandbox_id == orphan


def test_latency_knob_still_answers(e2b_emulator: RunningEmulator) -> None:
    e2b_emulator.emulator.set_latency(20, endpoint="create")
    e2b_emulator.emulator.set_latency(5)
    Sandbox.create("base", timeout=60).kill()
    assert [c.status for c in e2b_emulator.emulator.calls if c.plane == "api"] == [201, 204]


def test_unknown_template_and_bad_timeouts(e2b_emulator: RunningEmulator) -> None:
    from e2b import SandboxException

    with pytest.raises(SandboxException, match="template 'nope' not found"):
        Sandbox.create("nope", timeout=60)
    with pytest.raises(SandboxException, match="Timeout cannot be greater than 24 hours"):
        Sandbox.create("base", timeout=24 * 3600 + 1)


def test_extra_template_from_a_spec() -> None:
    with running_emulator(templates=["gpu-worker:8:4096:donmai"]) as emu:
        sbx = Sandbox.create("gpu-worker", timeout=60, **emu.sdk_kwargs)
        info = sbx.get_info()
        assert (info.cpu_count, info.memory_mb) == (8, 4096)
        assert sbx.commands.run("donmai --version").exit_code == 0


def test_stopping_leaves_no_process_and_no_directory() -> None:
    with running_emulator() as emu:
        root = emu.emulator.root
        assert root is not None and root.is_dir()
        sbx = Sandbox.create("donmai-worker", timeout=60, **emu.sdk_kwargs)
        paused = Sandbox.create("base", timeout=60, **emu.sdk_kwargs)
        sbx.commands.run("MARK=daemon nohup donmai agent run >runner.log 2>&1 &")
        streaming = sbx.commands.run("sleep 300", background=True, timeout=0)
        paused.commands.run("MARK=frozen sleep 300 >/dev/null 2>&1 &")
        homes = [emu.emulator.sandbox_home(s.sandbox_id) for s in (sbx, paused)]
        ids = [sbx.sandbox_id, paused.sandbox_id]
        assert pid_alive(streaming.pid)
        assert wait_for(lambda: pids_with_env("MARK=daemon") & sandbox_pids(ids[0]))
        assert wait_for(lambda: pids_with_env("MARK=frozen") & sandbox_pids(ids[1]))
        paused.pause()

    wait_for(lambda: not any(sandbox_pids(i) for i in ids))
    assert not pid_alive(streaming.pid)
    assert not any(path.exists() for path in [root, *homes])
    assert not list(Path(root).parent.glob(f"{root.name}*"))
