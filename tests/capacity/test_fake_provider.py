"""The in-memory provider other tests lean on, and the factories jobs use."""

from __future__ import annotations

import pytest

from pools.providers import PROVIDERS, for_org, for_pool, provider_class
from pools.providers.base import ProviderError, SandboxSpec
from pools.providers.e2b import E2BProvider
from pools.providers.fake import FakeProvider, registered


def spec(request_id: str = "r1") -> SandboxSpec:
    return SandboxSpec(session_id="1", request_id=request_id, org_slug="org-a", env={"E": "v"})


def test_registered_only_inside_the_context() -> None:
    assert "fake" not in PROVIDERS
    with registered():
        assert provider_class("fake") is FakeProvider
    assert "fake" not in PROVIDERS
    with pytest.raises(LookupError):
        provider_class("fake")


def test_fake_lifecycle(fake_cloud) -> None:  # type: ignore[no-untyped-def]
    p = FakeProvider("")
    handle = p.provision({"templateId": "donmai-worker", "launchRunnerInline": True}, spec())
    assert p.provision({"templateId": "donmai-worker"}, spec()).sandbox_id == handle.sandbox_id
    assert p.exec_command(handle, 'pgrep -f "donmai agent run"').exit_code == 0
    assert p.exec_command(handle, "echo $E $X", {"X": "y"}).stdout == "v y\n"
    assert p.exec_command(handle, "exit 4").exit_code == 4
    assert p.pause(handle) is True and p.pause(handle) is False
    with pytest.raises(ProviderError) as err:
        p.exec_command(handle, "true")
    assert err.value.status_code == 409
    assert p.resume(handle).sandbox_id == handle.sandbox_id
    assert [i.sandbox_id for i in p.list_sandboxes({"rensei_session": "1"})] == [handle.sandbox_id]
    assert p.terminate(handle) is True and p.terminate(handle) is False
    assert p.status(handle) is None
    base = p.provision({}, spec("r2"))
    assert p.exec_command(base, "which donmai").exit_code == 1


def test_factories(fake_cloud, settings, make_pool, org_a) -> None:  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = "env-key"
    settings.E2B_API_URL = "http://127.0.0.1:1"
    settings.E2B_SANDBOX_URL = ""
    e2b = for_pool(make_pool(org_a))
    assert isinstance(e2b, E2BProvider)
    assert (e2b.credential, e2b.api_url, e2b.sandbox_url) == ("env-key", "http://127.0.0.1:1", "")
    assert e2b._opts() == {"api_key": "env-key", "api_url": "http://127.0.0.1:1"}
    assert isinstance(for_org(org_a, "fake"), FakeProvider)  # needs no credential
    settings.E2B_API_KEY = ""
    with pytest.raises(ProviderError) as err:
        for_org(org_a)
    assert err.value.permanent and "No E2B credential" in str(err.value)


def test_org_credential_wins_over_the_environment(settings, make_pool, org_a) -> None:  # type: ignore[no-untyped-def]
    from rensei.credentials import set_credential

    settings.E2B_API_KEY = "env-key"
    set_credential(org_a, "e2b", "e2b_org_key_1234", None, "web")
    assert for_pool(make_pool(org_a)).credential == "e2b_org_key_1234"


def test_a_provider_never_shows_its_key() -> None:
    provider = E2BProvider("e2b_very_secret_key", api_url="http://127.0.0.1:1")
    assert "secret" not in repr(provider) and "http://127.0.0.1:1" in repr(provider)
