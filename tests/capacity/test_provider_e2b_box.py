"""Inside the box through the real SDK against the emulator: metrics, list, read, missing path."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from e2b import Sandbox

from pools.e2b_emulator.testing import RunningEmulator
from pools.providers.base import ProviderError, SandboxSpec
from pools.providers.e2b import E2BProvider


@pytest.fixture
def box(e2b_emulator: RunningEmulator):  # type: ignore[no-untyped-def]
    key = str(e2b_emulator.sdk_kwargs["api_key"])
    e2b = E2BProvider(key, api_url=e2b_emulator.url, sandbox_url=e2b_emulator.url, timeout=10)
    spec = SandboxSpec(session_id="7", request_id=str(uuid.uuid4()), org_slug="org-a")
    handle = e2b.provision({"templateId": "base", "launchRunnerInline": False}, spec)
    yield e2b, handle
    e2b.terminate(handle)


def test_metrics_arrive_as_plain_samples(box):  # type: ignore[no-untyped-def]
    e2b, handle = box
    start = datetime.now(UTC) - timedelta(minutes=5)
    deadline = time.monotonic() + 20
    samples = e2b.metrics(handle, start, datetime.now(UTC) + timedelta(seconds=1))
    while not samples and time.monotonic() < deadline:
        time.sleep(0.5)
        samples = e2b.metrics(handle, start, datetime.now(UTC) + timedelta(seconds=1))
    assert samples, "the emulator took no sample within 20 s"
    last = samples[-1]
    assert last.at.tzinfo is not None
    assert last.cpu_count >= 1
    assert 0 <= last.cpu_pct <= 100 * last.cpu_count
    assert last.mem_total_mb > 0 and 0 <= last.mem_used_mb <= last.mem_total_mb
    assert [s.at for s in samples] == sorted(s.at for s in samples)


def test_list_and_read_files_with_truncation(box):  # type: ignore[no-untyped-def]
    e2b, handle = box
    Sandbox.connect(handle.sandbox_id, **e2b._opts()).files.write("work/a.txt", "hello world")
    entries = e2b.list_files(handle, "/home/user")
    work = [e for e in entries if e.name == "work"]
    assert work and work[0].type == "dir" and work[0].path == "/home/user/work"
    (entry,) = e2b.list_files(handle, "/home/user/work")
    assert (entry.name, entry.type, entry.size) == ("a.txt", "file", 11)

    whole = e2b.read_file(handle, "/home/user/work/a.txt", 1024)
    assert (whole.data, whole.size, whole.truncated) == (b"hello world", 11, False)
    cut = e2b.read_file(handle, "/home/user/work/a.txt", 5)
    assert (cut.data, cut.size, cut.truncated) == (b"hello", 11, True)


def test_missing_path_is_a_clear_permanent_error(box):  # type: ignore[no-untyped-def]
    e2b, handle = box
    for call in (
        lambda: e2b.list_files(handle, "/home/user/nope"),
        lambda: e2b.read_file(handle, "/home/user/nope.txt", 10),
    ):
        with pytest.raises(ProviderError) as caught:
            call()
        assert caught.value.permanent
        assert str(caught.value).startswith("No such file or directory: /home/user/nope")
