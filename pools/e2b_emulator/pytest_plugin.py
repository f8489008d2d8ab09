"""pytest plugin: ``pytest_plugins = ["pools.e2b_emulator.pytest_plugin"]``.

The ``e2b_emulator`` fixture serves a fresh emulator for one test and points the E2B SDK
at it through the environment (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY), with
NO_PROXY covering loopback because the SDK's transport honours HTTP(S)_PROXY even there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import RunningEmulator, running_emulator


@pytest.fixture
def e2b_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    with running_emulator() as handle:
        kwargs = handle.sdk_kwargs
        monkeypatch.setenv("E2B_API_URL", handle.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", handle.url)
        monkeypatch.setenv("E2B_API_KEY", str(kwargs["api_key"]))
        monkeypatch.delenv("E2B_DEBUG", raising=False)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "127.0.0.1,localhost")
        yield handle
