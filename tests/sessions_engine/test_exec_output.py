"""What the exec job keeps of a command's output (head and tail, capped) and how it labels
the outcome. The live flushing against a real worker is in test_exec_streaming.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import DatabaseError

from pools.models import CapacityPool
from pools.providers.base import CommandTimeout, ExecResult
from pools.providers.fake import FakeCloud
from sessions import jobs, jobs_exec, services
from sessions.models import CommandRun, CommandRunState, Session
from sessions.output import HEAD_BYTES, TAIL_BYTES, CappedOutput, cap_output

LINES = "".join(f"line {i:05d}\n" for i in range(20_000))  # 220,000 bytes


def test_a_short_output_is_kept_whole() -> None:
    assert cap_output("ok\n") == ("ok\n", False)
    assert cap_output("x" * (HEAD_BYTES + TAIL_BYTES)) == ("x" * (HEAD_BYTES + TAIL_BYTES), False)
    assert cap_output("") == ("", False)


def test_a_long_output_keeps_the_head_and_the_tail_with_a_marker() -> None:
    text, cut = cap_output(LINES + "Error: the last line is the one that matters\n")
    assert cut is True
    assert text.startswith("line 00000\nline 00001\n")
    assert text.endswith("line 19999\nError: the last line is the one that matters\n")
    total = len(LINES) + len("Error: the last line is the one that matters\n")
    assert f"\n… {total - HEAD_BYTES - TAIL_BYTES:,} bytes omitted …\n" in text
    head, tail = text.split(f"… {total - HEAD_BYTES - TAIL_BYTES:,} bytes omitted …")
    assert len(head.encode()) == HEAD_BYTES + 1  # the marker's own leading newline
    assert len(tail.encode()) == TAIL_BYTES + 1  # and its trailing one


@pytest.mark.parametrize("piece", [1, 7, 4096, 50_000])
def test_streamed_pieces_give_the_same_text_as_the_whole(piece: int) -> None:
    output = CappedOutput()
    for start in range(0, len(LINES), piece):
        output.add(LINES[start : start + piece])
    assert (output.text(), output.truncated) == cap_output(LINES)


def test_memory_stays_bounded_however_much_is_printed() -> None:
    output = CappedOutput()
    for _ in range(2_000):
        output.add("y" * 5_000)  # 10 MB in all
    assert output.total_bytes == 10_000_000
    assert len(output._head) == HEAD_BYTES and len(output._tail) <= 2 * TAIL_BYTES
    assert len(output.text().encode()) < HEAD_BYTES + TAIL_BYTES + 100


def test_cut_points_never_split_a_character_and_nuls_go() -> None:
    text, cut = cap_output("é" * 50_001 + "\x00")  # two-byte characters, odd count
    assert cut is True
    assert "\ufffd" not in text and "\x00" not in text
    head, _, tail = text.partition("\n… ")
    assert set(head) == {"é"} and set(tail.split("…\n", 1)[1]) == {"é"}


# --- the job: outcome and labels ------------------------------------------------------------


@pytest.fixture
def running(pool: CapacityPool, new_session: Callable[..., Session]) -> Session:
    session = new_session()
    jobs.provision(session.pk)
    session.refresh_from_db()
    return session


@pytest.mark.django_db
def test_a_non_zero_exit_is_labelled_with_its_code(running: Session, cloud: FakeCloud) -> None:
    cloud.exec_handler = lambda sandbox, command, env: ExecResult(3, "", "boom\n")
    run = services.run_command(running, command="false")
    jobs.exec_command(run.pk)
    run.refresh_from_db()
    assert (run.state, run.exit_code, run.stderr) == (CommandRunState.DONE, 3, "boom\n")
    assert run.outcome == "Exited 3" and run.finished

    cloud.exec_handler = lambda sandbox, command, env: ExecResult(0, "ok\n", "")
    ok = services.run_command(running, command="true")
    jobs.exec_command(ok.pk)
    ok.refresh_from_db()
    assert (ok.outcome, ok.stdout) == ("Exited 0", "ok\n")


@pytest.mark.django_db
def test_a_timeout_is_an_error_labelled_as_such(running: Session, cloud: FakeCloud) -> None:
    def too_slow(sandbox: object, command: str, env: object) -> ExecResult:
        raise CommandTimeout("The command did not finish within 5 s in sandbox x.")

    cloud.exec_handler = too_slow  # type: ignore[assignment]
    run = services.run_command(running, command="sleep 60", timeout=5)
    jobs.exec_command(run.pk)
    run.refresh_from_db()
    assert run.state == CommandRunState.ERROR and run.timed_out is True
    assert run.outcome == "Timed out" and "did not finish within 5 s" in run.error
    assert run.exit_code is None and run.finished_at is not None


@pytest.mark.django_db
def test_other_errors_say_error(running: Session, cloud: FakeCloud) -> None:
    from pools.providers.base import ProviderError

    cloud.fail_next("exec_command", ProviderError("Sandbox gone.", permanent=True))
    run = services.run_command(running, command="id")
    jobs.exec_command(run.pk)
    run.refresh_from_db()
    assert (run.state, run.timed_out, run.outcome) == (CommandRunState.ERROR, False, "Error")


@pytest.mark.django_db
def test_a_live_flush_writes_only_to_a_running_run(running: Session) -> None:
    run = services.run_command(running, command="yes")
    live = jobs_exec._LiveOutput(run.pk)
    live.add("stdout", LINES)
    live.flush()  # still queued: nothing written
    run.refresh_from_db()
    assert run.stdout == ""

    CommandRun.objects.filter(pk=run.pk).update(state=CommandRunState.RUNNING)
    live.add("stderr", "warn\n")
    live.flush()
    run.refresh_from_db()
    assert (run.stdout, run.stdout_truncated) == cap_output(LINES)
    assert (run.stderr, run.stderr_truncated) == ("warn\n", False)

    # Something else ended the run meanwhile: its outcome stands.
    CommandRun.objects.filter(pk=run.pk).update(
        state=CommandRunState.ERROR, stdout="", error="The worker stopped."
    )
    live.add("stdout", "more\n")
    live.flush()
    run.refresh_from_db()
    assert (run.state, run.stdout) == (CommandRunState.ERROR, "")


@pytest.mark.django_db
def test_a_known_outcome_waits_for_the_database_to_come_back(
    running: Session, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command ended while the database was away: its outcome is written once it
    answers again, not lost to "outcome unknown"."""
    cloud.exec_handler = lambda sandbox, command, env: ExecResult(0, "built\n", "")
    real, failures = jobs_exec._finish, [DatabaseError("server closed")] * 2
    waits: list[float] = []

    def finish(run_id: int, **fields: object) -> None:
        if failures:
            raise failures.pop()
        real(run_id, **fields)

    monkeypatch.setattr(jobs_exec, "_finish", finish)
    monkeypatch.setattr(jobs_exec.time, "sleep", waits.append)
    run = services.run_command(running, command="make")
    jobs.exec_command(run.pk)
    run.refresh_from_db()
    assert (run.state, run.exit_code, run.stdout) == (CommandRunState.DONE, 0, "built\n")
    assert waits == [0.5, 1.0]  # backed off between tries


@pytest.mark.django_db
def test_a_database_gone_for_good_fails_the_job_after_its_bound(
    running: Session, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    monkeypatch.setattr(jobs_exec.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(jobs_exec.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))

    def down(run_id: int, **fields: object) -> None:
        raise DatabaseError("connection refused")

    monkeypatch.setattr(jobs_exec, "_finish", down)
    run = services.run_command(running, command="true")
    with pytest.raises(DatabaseError):
        jobs.exec_command(run.pk)  # the sweep then ends it: its outcome could not be kept
    assert jobs_exec.FINISH_RETRY_SECONDS - 5 <= clock[0] <= jobs_exec.FINISH_RETRY_SECONDS
