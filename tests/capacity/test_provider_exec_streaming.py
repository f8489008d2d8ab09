"""Output as it comes: ``exec_command(..., on_output=...)`` through the real SDK against the
local emulator, and the fake provider's side of the same contract.

Timing is never asserted. A command prints a line, then waits for a file that only the
``on_output`` callback creates, on receiving that line: if output arrived only when the
command ended, the command would give up waiting and exit 7.
"""

from __future__ import annotations

import threading

import pytest

from pools.e2b_emulator.testing import RunningEmulator
from pools.providers.base import CommandTimeout, ExecResult
from pools.providers.e2b import E2BProvider
from pools.providers.fake import FakeProvider, registered
from tests.capacity.test_provider_e2b import provider_for, spec

# Waits up to ~60 s for ./go (the sandbox's home), then exits 7: the handshake's bound,
# never reached when output streams.
WAIT_FOR_GO = "for i in $(seq 600); do [ -f go ] && break; sleep 0.1; done; [ -f go ] || exit 7"


@pytest.fixture
def e2b(e2b_emulator: RunningEmulator) -> E2BProvider:
    return provider_for(e2b_emulator)


class Recorder:
    """An ``on_output`` callback that keeps every piece, in order."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, stream: str, text: str) -> None:
        with self.lock:
            self.pieces.append((stream, text))

    def joined(self, stream: str) -> str:
        return "".join(text for s, text in self.pieces if s == stream)


def test_output_arrives_while_the_command_still_runs(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    handle = e2b.provision({"templateId": "donmai-worker"}, spec())
    home = e2b_emulator.emulator.sandboxes[handle.sandbox_id].home
    seen: list[tuple[str, str]] = []

    def on_output(stream: str, text: str) -> None:
        seen.append((stream, text))
        if "line1" in text:
            # Only now may the command go on: it is still running, waiting for this file.
            (home / "go").touch()

    result = e2b.exec_command(
        handle,
        f"echo line1; echo warn1 >&2; {WAIT_FOR_GO}; echo line2; echo warn2 >&2",
        on_output=on_output,
    )
    assert result.exit_code == 0, "output reached the callback only after the command ended"
    assert "".join(t for s, t in seen if s == "stdout") == "line1\nline2\n"
    assert "".join(t for s, t in seen if s == "stderr") == "warn1\nwarn2\n"
    # With a callback the result holds no second copy of the output.
    assert (result.stdout, result.stderr) == ("", "")


def test_lines_printed_over_three_seconds_arrive_before_the_end(e2b, e2b_emulator):  # type: ignore[no-untyped-def]
    handle = e2b.provision({"templateId": "donmai-worker"}, spec())
    box = e2b_emulator.emulator.sandboxes[handle.sandbox_id]
    command = "for i in 1 2 3; do echo line$i; sleep 1; done"
    still_running: dict[str, bool] = {}

    def on_output(stream: str, text: str) -> None:
        running = any(p.running for p in box.processes.values() if command in p.args)
        for line in text.split():
            still_running[line] = running

    result = e2b.exec_command(handle, command, on_output=on_output)
    assert result.exit_code == 0
    assert list(still_running) == ["line1", "line2", "line3"]
    # The first line came while the command still had two seconds of sleeping ahead.
    assert still_running["line1"] is True


def test_a_failing_command_streams_too_and_keeps_its_exit_code(e2b):  # type: ignore[no-untyped-def]
    handle = e2b.provision({"templateId": "donmai-worker"}, spec())
    recorder = Recorder()
    result = e2b.exec_command(handle, "echo out; echo err >&2; exit 3", on_output=recorder)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "", "")
    assert (recorder.joined("stdout"), recorder.joined("stderr")) == ("out\n", "err\n")


def test_a_timeout_raises_after_delivering_what_was_printed(e2b):  # type: ignore[no-untyped-def]
    handle = e2b.provision({"templateId": "donmai-worker"}, spec())
    recorder = Recorder()
    with pytest.raises(CommandTimeout) as timed_out:
        e2b.exec_command(handle, "echo before; sleep 30; echo after", timeout=2, on_output=recorder)
    assert timed_out.value.permanent and timed_out.value.status_code == 504
    assert "did not finish within 2 s" in timed_out.value.message
    assert recorder.joined("stdout") == "before\n"


def test_without_a_callback_the_result_holds_the_output(e2b):  # type: ignore[no-untyped-def]
    handle = e2b.provision({"templateId": "donmai-worker"}, spec())
    result = e2b.exec_command(handle, "echo out; echo err >&2")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")


def test_the_fake_meets_the_same_contract() -> None:
    with registered() as cloud:
        fake = FakeProvider("")
        handle = fake.provision({"templateId": "donmai-worker"}, spec())
        cloud.exec_handler = lambda sandbox, command, env: ExecResult(3, "out\n", "err\n")
        recorder = Recorder()
        result = fake.exec_command(handle, "anything", on_output=recorder)
        assert (result.exit_code, result.stdout, result.stderr) == (3, "", "")
        assert (recorder.joined("stdout"), recorder.joined("stderr")) == ("out\n", "err\n")
        assert fake.exec_command(handle, "anything") == ExecResult(3, "out\n", "err\n")
