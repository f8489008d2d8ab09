"""The exec job: one command in a running sandbox, its output written as it comes.

Not retried: a command may have side effects, so a redelivered job (its worker died
mid-command) records that the outcome is unknown instead of running it again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from pools.providers import for_pool
from pools.providers.base import CommandTimeout, ExecResult, Provider, ProviderError
from sessions.audit import audit
from sessions.env import command_env
from sessions.events_out import exec_finished
from sessions.models import CommandRun, CommandRunState, SessionState
from sessions.output import HEAD_BYTES, TAIL_BYTES, CappedOutput

log = logging.getLogger(__name__)
S = SessionState

OUTPUT_CAP = HEAD_BYTES + TAIL_BYTES  # bytes kept of each of stdout / stderr, plus a marker
FLUSH_SECONDS = 0.5  # how often a running command's output so far is written to its run
FINISH_RETRY_SECONDS = 120.0  # how long a known outcome waits for the database to return


class _LiveOutput:
    """What a running command has printed so far, written to its run as it comes.

    The provider's thread adds pieces; the job's own thread writes the capped text at most
    once every FLUSH_SECONDS, and only when something new arrived, so a chatty command
    costs two bounded UPDATEs a second, never one per line.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._streams = {"stdout": CappedOutput(), "stderr": CappedOutput()}
        self._lock = threading.Lock()
        self._dirty = False

    def add(self, stream: str, text: str) -> None:
        with self._lock:
            self._streams["stderr" if stream == "stderr" else "stdout"].add(text)
            self._dirty = True

    def fields(self) -> dict[str, Any]:
        with self._lock:
            self._dirty = False
            out, err = self._streams["stdout"], self._streams["stderr"]
            return {
                "stdout": out.text(),
                "stderr": err.text(),
                "stdout_truncated": out.truncated,
                "stderr_truncated": err.truncated,
            }

    def flush(self) -> None:
        if not self._dirty:
            return
        try:
            # Conditional: a run that something else already ended keeps its outcome.
            CommandRun.objects.filter(pk=self.run_id, state=CommandRunState.RUNNING).update(
                **self.fields()
            )
        except DatabaseError:
            # A busy database delays the live view, never the command: try at the next tick.
            log.warning("could not write the output so far of command run %s", self.run_id)
            self._dirty = True


def _exec_streaming(
    provider: Provider, sandbox_id: str, run: CommandRun, live: _LiveOutput
) -> ExecResult:
    """The provider call on a thread of its own while this one flushes the output so far,
    so every database write stays on the job's thread and connection."""
    outcome: dict[str, Any] = {}
    done = threading.Event()
    env = command_env(run)

    def call() -> None:
        try:
            outcome["result"] = provider.exec_command(
                sandbox_id, run.command, env, run.timeout_seconds, on_output=live.add
            )
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=call, name=f"exec-run-{run.pk}", daemon=True).start()
    while not done.wait(FLUSH_SECONDS):
        live.flush()
    if "error" in outcome:
        raise outcome["error"]
    result: ExecResult = outcome["result"]
    return result


def exec_command(run_id: int) -> None:
    now = timezone.now()
    if not CommandRun.objects.filter(pk=run_id, state=CommandRunState.QUEUED).update(
        state=CommandRunState.RUNNING, started_at=now
    ):
        # Redelivered after the worker died mid-command: re-running it is not safe.
        _finish(
            run_id,
            state=CommandRunState.ERROR,
            error="The worker stopped while the command ran; its outcome is unknown.",
            finished_at=now,
            env_encrypted="",
        )
        return
    run = CommandRun.objects.select_related("session", "session__pool", "session__org").get(
        pk=run_id
    )
    session = run.session
    fields: dict[str, Any] = {"env_encrypted": ""}
    if session.state != S.RUNNING or not session.sandbox_id or session.pool is None:
        fields.update(
            state=CommandRunState.ERROR, error=f"The session is {session.state}, not running."
        )
    else:
        live = _LiveOutput(run_id)
        try:
            result = _exec_streaming(for_pool(session.pool), session.sandbox_id, run, live)
        except ProviderError as exc:
            fields.update(
                state=CommandRunState.ERROR,
                error=exc.message,
                timed_out=isinstance(exc, CommandTimeout),
            )
        else:
            fields.update(state=CommandRunState.DONE, exit_code=result.exit_code)
        # What it printed is kept whatever the outcome: the lines before a timeout matter.
        fields.update(live.fields())
    fields["finished_at"] = timezone.now()
    _finish_through_outages(run_id, fields)
    audit(
        session,
        "session.command_finished",
        run=run_id,
        state=fields["state"],
        exit_code=fields.get("exit_code"),
    )


def _finish_through_outages(run_id: int, fields: dict[str, Any]) -> None:
    """The outcome is known once the command has ended: keep trying to write it while the
    database is away (up to ``FINISH_RETRY_SECONDS``), rather than fail the job and leave
    the command "lost, outcome unknown". The run stays held by this worker meanwhile."""
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    wait = 0.5
    while True:
        try:
            _finish(run_id, **fields)
            return
        except DatabaseError as exc:
            if time.monotonic() + wait > deadline:
                raise
            log.warning(
                "could not write the outcome of command run %s (%s); trying again in %.1f s",
                run_id,
                type(exc).__name__,
                wait,
            )
            if not connection.in_atomic_block:  # a dropped one is opened afresh next query
                connection.close_if_unusable_or_obsolete()
            time.sleep(wait)
            wait = min(wait * 2, 5.0)


def _finish(run_id: int, **fields: Any) -> None:
    """running → done/error, and ``session.exec.finished`` in the same transaction."""
    with transaction.atomic():
        if CommandRun.objects.filter(pk=run_id, state=CommandRunState.RUNNING).update(**fields):
            run = CommandRun.objects.select_related("session").get(pk=run_id)
            exec_finished(run, run.session.org_id)
