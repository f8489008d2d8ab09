"""The E2B provider through the real SDK against the local emulator (what goes on the wire)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from pools.providers import provider_class
from pools.providers.base import ProviderError, SandboxHandle, SandboxSpec
from pools.providers.e2b import E2BProvider, idempotency_key


def provider_for(emu: RunningEmulator, key: str | None = None) -> E2BProvider:
    kwargs = emu.sdk_kwargs
    return E2BProvider(key or str(kwargs["api_key"]), api_url=emu.url, sandbox_url=emu.url)


def spec(session: str = "42", **extra: object) -> SandboxSpec:
    return SandboxSpec(session_id=session, request_id=str(uuid.uuid4()), org_slug="org-a", **extra)  # type: ignore[arg-type]


@pytest.fixture
def e2b(e2b_emulator: RunningEmulator) -> E2BProvider:
    return provider_for(e2b_emulator)


def test_registry_builds_the_e2b_provider_like_the_integrations_page(e2b_emulator):  # type: ignore[no-untyped-def]
    cls = provider_class("e2b")
    assert cls is E2BProvider
    key = str(e2b_emulator.sdk_kwargs["api_key"])
    latency = cls(key, api_url=e2b_emulator.url, sandbox_url=e2b_emulator.url).ping()
    assert latency >= 0
    assert e2b_emulator.emulator.calls_to("list")[-1].query.find("limit=1") >= 0


def test_provision_sends_template_envs_timeout_metadata_and_idempotency_key(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    s = spec(env={"SESSION_VAR": "s"}, metadata={"extra": "x"})
    config = {
        "templateId": "donmai-worker",
        "timeoutSeconds": 1800,
        "onTimeout": "pause",
        "envVars": {"POOL_VAR": "p", "SESSION_VAR": "overridden"},
    }
    handle = e2b.provision(config, s)

    create = e2b_emulator.emulator.calls_to("create")[-1]
    assert create.status == 201
    assert create.body["templateID"] == "donmai-worker"
    assert create.body["timeout"] == 1800
    assert create.body["autoPause"] is True  # lifecycle on_timeout=pause
    assert create.body["envVars"] == {"POOL_VAR": "p", "SESSION_VAR": "s"}
    assert create.body["metadata"] == {
        "extra": "x",
        "rensei_org": "org-a",
        "rensei_session": "42",
        "rensei_request": s.request_id,
    }
    assert create.request_headers["idempotency-key"] == s.request_id
    # The handle carries what get_info reported for the template's size.
    assert handle.sandbox_id in e2b_emulator.emulator.sandbox_ids()
    assert (handle.template, handle.vcpu, handle.memory_mb) == ("donmai-worker", 2, 1024)
    assert handle.started_at.tzinfo is not None
    # Env reached the box: pool env and session env (session wins).
    result = e2b.exec_command(handle, "echo $POOL_VAR $SESSION_VAR")
    assert result.stdout == "p s\n"


def test_provision_defaults_and_kill_on_timeout(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    e2b.provision({}, spec())
    create = e2b_emulator.emulator.calls_to("create")[-1]
    assert create.body["templateID"] == "base"
    assert create.body["timeout"] == 3600  # always explicit (E2B's own default is 15 s or 300 s)
    assert create.body["autoPause"] is False


def test_provision_is_idempotent_on_the_request_id(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    s = spec()
    first = e2b.provision({"templateId": "donmai-worker"}, s)
    second = e2b.provision({"templateId": "donmai-worker"}, s)
    assert first.sandbox_id == second.sandbox_id
    assert e2b_emulator.emulator.sandbox_ids() == [first.sandbox_id]


def test_snapshot_wins_over_template(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    # The emulator knows templates only; a snapshot id is sent where the template goes.
    e2b.provision({"templateId": "base", "snapshotId": "donmai-worker"}, spec())
    assert e2b_emulator.emulator.calls_to("create")[-1].body["templateID"] == "donmai-worker"


def runner_in(emu: RunningEmulator, sandbox_id: str) -> bool:
    """Is `donmai agent run` alive in one of *this* sandbox's process groups?

    Emulated commands run on the host, so a bare pgrep would also see other sandboxes'.
    """
    return any(
        subprocess.run(
            ["pgrep", "-g", str(pgid), "-f", "donmai agent run"], capture_output=True
        ).returncode
        == 0
        for pgid in emu.emulator.process_ids(sandbox_id)
    )


def test_launch_inline_leaves_the_runner_running(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    handle = e2b.provision(
        {"templateId": "donmai-worker", "launchRunnerInline": True}, spec(env={"TOKEN": "t"})
    )
    check = e2b.exec_command(handle, 'pgrep -f "donmai agent run"')
    assert check.exit_code == 0, check
    assert check.stdout.strip()
    assert runner_in(e2b_emulator, handle.sandbox_id)
    start = e2b_emulator.emulator.calls_to("envd.Start")[0]
    assert start.request_headers["e2b-sandbox-id"] == handle.sandbox_id


def test_without_launch_inline_no_runner(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    handle = e2b.provision({"templateId": "donmai-worker"}, spec())
    assert e2b_emulator.emulator.calls_to("envd.Start") == []  # nothing ran in the box
    assert not runner_in(e2b_emulator, handle.sandbox_id)


def test_exec_success_failure_env_and_default_timeout(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    handle = e2b.provision({"templateId": "donmai-worker"}, spec())
    ok = e2b.exec_command(handle.sandbox_id, "which donmai")
    assert ok.exit_code == 0 and ok.stdout.strip().endswith("donmai")

    failed = e2b.exec_command(handle, "echo out; echo err >&2; exit 3")
    assert (failed.exit_code, failed.stdout, failed.stderr) == (3, "out\n", "err\n")

    env = {"ONLY_HERE": "x"}
    piped = e2b.exec_command(handle, "echo $ONLY_HERE | tr a-z A-Z && echo done", env)
    assert piped.stdout == "X\ndone\n"
    assert e2b.exec_command(handle, "echo ${ONLY_HERE:-unset}").stdout == "unset\n"

    starts = [c for c in e2b_emulator.emulator.calls_to("envd.Start")]
    assert starts and all(c.request_headers["connect-timeout-ms"] == "600000" for c in starts)
    # Connecting for a command keeps the box alive at least as long as the command may run.
    assert e2b_emulator.emulator.calls_to("connect")[-1].body == {"timeout": 600}
    e2b.exec_command(handle, "true", timeout=5)
    assert (
        e2b_emulator.emulator.calls_to("envd.Start")[-1].request_headers["connect-timeout-ms"]
        == "5000"
    )


def test_pause_resume_terminate_status(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    handle = e2b.provision({"templateId": "donmai-worker"}, spec())
    assert e2b.pause(handle) is True
    assert e2b.pause(handle) is False
    info = e2b.status(handle)
    assert info is not None and info.state == "paused"

    # Exec never resumes a paused sandbox behind the platform's back.
    with pytest.raises(ProviderError) as paused:
        e2b.exec_command(handle, "true")
    assert paused.value.permanent and paused.value.status_code == 409
    assert "paused" in str(paused.value)
    assert e2b_emulator.emulator.sandbox_ids("paused") == [handle.sandbox_id]

    resumed = e2b.resume(handle, timeout_seconds=900)
    assert isinstance(resumed, SandboxHandle)
    assert resumed.sandbox_id == handle.sandbox_id
    assert e2b_emulator.emulator.calls_to("connect")[-1].body == {"timeout": 900}
    assert e2b.status(resumed).state == "running"  # type: ignore[union-attr]
    assert e2b.exec_command(resumed, "echo back").stdout == "back\n"

    assert e2b.terminate(handle) is True
    assert e2b.terminate(handle) is False
    assert e2b.status(handle) is None
    assert e2b_emulator.emulator.sandbox_ids() == []

    with pytest.raises(ProviderError) as gone:
        e2b.exec_command(handle, "true")
    assert gone.value.permanent and gone.value.status_code == 404
    with pytest.raises(ProviderError) as gone_pause:
        e2b.pause(handle)
    assert gone_pause.value.status_code == 404


def test_list_by_metadata_across_pages(e2b, e2b_emulator, monkeypatch):  # type: ignore[no-untyped-def]
    import pools.providers.e2b as module

    monkeypatch.setattr(module, "LIST_PAGE_SIZE", 2)  # force several pages
    mine = [e2b.provision({}, spec(session=str(i))) for i in range(5)]
    other = E2BProvider(e2b.credential, api_url=e2b.api_url, sandbox_url=e2b.sandbox_url)
    other.provision({}, SandboxSpec(session_id="9", request_id=str(uuid.uuid4()), org_slug="b"))
    e2b.pause(mine[0])

    found = e2b.list_sandboxes({"rensei_org": "org-a"})
    assert sorted(i.sandbox_id for i in found) == sorted(h.sandbox_id for h in mine)
    assert len(e2b_emulator.emulator.calls_to("list")) >= 3
    by_id = {i.sandbox_id: i for i in found}
    assert by_id[mine[0].sandbox_id].state == "paused"
    assert by_id[mine[1].sandbox_id].metadata["rensei_session"] == "1"

    running = e2b.list_sandboxes({"rensei_org": "org-a"}, states=("running",))
    assert mine[0].sandbox_id not in {i.sandbox_id for i in running}
    assert len(running) == 4
    one = e2b.list_sandboxes({"rensei_session": "3", "rensei_org": "org-a"})
    assert [i.sandbox_id for i in one] == [mine[3].sandbox_id]


def test_unknown_template_is_permanent(e2b):  # type: ignore[no-untyped-def]
    with pytest.raises(ProviderError) as err:
        e2b.provision({"templateId": "no-such-template"}, spec())
    assert err.value.permanent
    assert str(err.value) == "Template 'no-such-template' not found in E2B"


def test_bad_key_is_permanent_and_never_echoed() -> None:
    with running_emulator(api_keys=["the-right-key"]) as emu:
        bad = provider_for(emu, key="e2b_wrong_secret_value")
        for call in (bad.ping, lambda: bad.provision({}, spec())):
            with pytest.raises(ProviderError) as err:
                call()
            assert err.value.permanent and err.value.status_code == 401
            assert str(err.value) == "E2B rejected this key (401)."
            assert "wrong_secret" not in str(err.value)


@pytest.mark.parametrize("status", [429, 503, 502])
def test_rate_limits_and_outages_are_transient(e2b, e2b_emulator, status):  # type: ignore[no-untyped-def]
    e2b_emulator.emulator.fail_next("create", status=status, should_retry=False)
    with pytest.raises(ProviderError) as err:
        e2b.provision({}, spec())
    assert not err.value.permanent
    assert err.value.status_code == status
    assert e2b_emulator.emulator.sandbox_ids() == []


def test_concurrency_limit_429_is_transient_with_e2b_words(e2b_emulator):  # type: ignore[no-untyped-def]
    e2b_emulator.emulator.set_max_running(1, should_retry=False)
    e2b = provider_for(e2b_emulator)
    e2b.provision({}, spec())
    with pytest.raises(ProviderError) as err:
        e2b.provision({}, spec())
    assert not err.value.permanent and err.value.status_code == 429
    assert "maximum number of concurrent E2B sandboxes (1)" in str(err.value)


def test_sdk_retries_a_single_429_by_itself(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    e2b_emulator.emulator.fail_next("create", status=429)  # no Should-Retry: the SDK retries
    handle = e2b.provision({}, spec())
    assert handle.sandbox_id
    assert [c.status for c in e2b_emulator.emulator.calls_to("create")] == [429, 201]


def test_unreachable_e2b_is_transient() -> None:
    down = E2BProvider("k", api_url="http://127.0.0.1:9", sandbox_url="http://127.0.0.1:9")
    with pytest.raises(ProviderError) as err:
        down.ping()
    assert not err.value.permanent
    assert "Could not reach E2B at http://127.0.0.1:9" in str(err.value)


def test_invalid_config_is_a_permanent_provider_error(e2b):  # type: ignore[no-untyped-def]
    with pytest.raises(ProviderError) as err:
        e2b.provision({"timeoutSeconds": "3600"}, spec())
    assert err.value.permanent and "timeoutSeconds" in str(err.value)


def test_idempotency_key_shape() -> None:
    rid = str(uuid.uuid4()).upper()
    assert idempotency_key(rid) == rid.lower()
    odd = idempotency_key("Not A UUID!")
    assert len(odd) == 64 and odd.isalnum()


def test_capability_profile_and_kinds() -> None:
    caps = E2BProvider.capabilities
    words = {key: text for key, _, text in caps.rows()}
    assert words["supports_pause_resume"] == "yes (full memory + FS, ~1s pause/resume)"
    assert words["max_concurrent"] == "none published (tier-gated by E2B)"
    assert words["supports_exec"] == "yes"
    assert all(label and text for _, label, text in caps.rows())
    assert E2BProvider.runtime_kinds == ("npm", "python-pip", "http", "mcp-server", "a2a-protocol")
    assert E2BProvider.requirement_kinds == (
        "long-running",
        "network-egress",
        "git",
        "full-history-clone",
    )
