"""The bodies of the session jobs: provision, pause, resume, terminate, exec.

``sessions.tasks`` wraps each in a Celery task (ids in, nothing secret in the arguments);
the logic lives here so the reconciler and tests can call it directly. Every job is safe
to run twice: it starts with a conditional update, and a loser does nothing.

Test hook, honoured only when set: ``RENSEI_TEST_CRASH_AFTER_CREATE`` names a file holding
a number N. While N > 0, a provision job that has its sandbox handle (created or adopted)
decrements N and SIGKILLs its own worker process before saving the handle: a crash at the
worst moment (N = 1), or a poison task (N large). No file, or N = 0: no effect. Never set
it outside tests.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import signal
import threading
from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from pools.providers import for_pool
from pools.providers.base import (
    CommandTimeout,
    ExecResult,
    Provider,
    ProviderError,
    SandboxHandle,
    SandboxInfo,
    SandboxSpec,
)
from rensei.audit import record
from rensei.models import Channel
from sessions.dispatch import FAILED, NOOP, dispatch, dispatch_waiting
from sessions.intervals import close_open_interval, open_interval
from sessions.models import CommandRun, CommandRunState, Session, SessionState
from sessions.output import HEAD_BYTES, TAIL_BYTES, CappedOutput
from sessions.services import command_env, describe, session_env
from sessions.state import transition, transition_where

log = logging.getLogger(__name__)
S = SessionState

MAX_PROVISION_ATTEMPTS = 5  # provision job starts per pool, crashes included
TRANSIENT_RETRIES = 4  # so 1 + 4 transient retries fit within the attempt limit
OTHER_RETRIES = 5
OUTPUT_CAP = HEAD_BYTES + TAIL_BYTES  # bytes kept of each of stdout / stderr, plus a marker
FLUSH_SECONDS = 0.5  # how often a running command's output so far is written to its run
# Launches the runner unless it already runs. pgrep -f reads whole command lines, this
# shell's too: "[d]" keeps the pattern from matching itself and the quoted "run" keeps the
# launch from matching (bash drops the quotes, so the runner's own command line matches).
RUNNER_IF_ABSENT = (
    'pgrep -f "[d]onmai agent run" >/dev/null || '
    'nohup donmai agent "run" >/tmp/donmai-runner.log 2>&1 &'
)


def backoff(retry: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: what the provider asked for, else 2, 4, 8… (≤ 60)."""
    if retry_after:
        return min(max(retry_after, 0.5), 300.0)
    return min(60.0, 2.0 * 2**retry) + random.uniform(0, 1)


def audit(session: Session, action: str, **detail: Any) -> None:
    record(
        org=session.org,
        action=action,
        target=describe(session),
        channel=Channel.JOB,
        detail=detail,
    )


def _load(session_id: int) -> Session | None:
    return Session.objects.select_related("org", "pool", "issue").filter(pk=session_id).first()


def _is_gone(exc: ProviderError) -> bool:
    return exc.status_code == 404


# --- provision ---------------------------------------------------------------------------


def provision(session_id: int, *, retry: int = 0, can_retry: bool = True) -> float | None:
    """Create (or adopt) the sandbox of a ``provisioning`` session.

    Returns seconds to wait before retrying after a transient error, or None when done.
    """
    # The attempt counter moves before anything else, so a job that kills its worker every
    # time still advances it (acks_late redelivers) and stops at the limit.
    if not Session.objects.filter(pk=session_id, state=S.PROVISIONING).update(
        attempts=F("attempts") + 1
    ):
        return None
    session = _load(session_id)
    if session is None or session.pool is None:
        return None
    if session.attempts > MAX_PROVISION_ATTEMPTS:
        tried = session.attempts - 1
        reason = f"Gave up after {tried} attempts"
        reason += f": {session.last_error}" if session.last_error else " (the job kept stopping)."
        if transition(session, S.FAILED, expected=[S.PROVISIONING], note=reason, last_error=reason):
            audit(session, "session.failed", reason=reason)
            discard_sandboxes(session)
            _free_slot(session)
        return None

    pool = session.pool
    adopted = False
    try:
        provider = for_pool(pool)
        handle = _find_existing(provider, session) if session.attempts > 1 else None
        if handle is not None:
            adopted = True
            if pool.config.get("launchRunnerInline"):
                # The crashed attempt may have died before the provider launched it.
                launch_runner(provider, handle, session)
        else:
            handle = provider.provision(pool.config, _spec(session))
        _test_crash_hook()
    except ProviderError as exc:
        return _provision_failed(session, exc, retry=retry, can_retry=can_retry)

    if record_handle(session, handle, note=("adopted" if adopted else "created")):
        audit(
            session,
            "session.provisioned",
            pool=pool.name,
            sandbox=handle.sandbox_id,
            adopted=adopted,
        )
        return None
    # Lost the race: someone else recorded this sandbox (the reconciler adopted it), or the
    # session moved on (terminated while we were creating) and nobody will use the sandbox.
    session.refresh_from_db()
    if session.sandbox_id != handle.sandbox_id:
        _kill_quietly(provider, handle.sandbox_id)
        audit(session, "session.sandbox_discarded", sandbox=handle.sandbox_id, state=session.state)
    return None


def launch_runner(provider: Provider, handle: SandboxHandle, session: Session) -> None:
    """Start ``donmai agent run`` in an adopted sandbox unless it already runs.

    Like the provider's own launch: a launch that cannot work kills the sandbox and raises a
    permanent error (the caller fails over); a transient error leaves it for the retry.
    """
    try:
        result = provider.exec_command(handle, RUNNER_IF_ABSENT, session_env(session), 60)
    except ProviderError as exc:
        if exc.permanent:
            _kill_quietly(provider, handle.sandbox_id)
        raise
    if result.exit_code != 0:
        _kill_quietly(provider, handle.sandbox_id)
        output = (result.stderr or result.stdout).strip()[-300:]
        raise ProviderError(
            f"Sandbox {handle.sandbox_id} was adopted but launching `donmai agent run` failed "
            f"(exit {result.exit_code}): {output}",
            permanent=True,
        )


def _kill_quietly(provider: Provider, sandbox_id: str) -> None:
    try:
        provider.terminate(sandbox_id)
    except ProviderError as exc:
        log.warning("could not kill sandbox %s: %s", sandbox_id, exc)


def discard_sandboxes(session: Session) -> int:
    """Best effort: kill every sandbox made for a session that will not use it (a crashed
    attempt may have made one). What this misses, the reconciler kills as an orphan."""
    if session.pool is None:
        return 0
    killed = 0
    try:
        provider = for_pool(session.pool)
        for info in provider.list_sandboxes(_made_for(session)):
            killed += int(provider.terminate(info.sandbox_id))
    except ProviderError as exc:
        log.warning("session %s: could not clean up its sandboxes: %s", session.pk, exc)
    return killed


def _made_for(session: Session) -> dict[str, str]:
    """The metadata filter that finds every sandbox made for this session."""
    return {"rensei_org": session.org.slug, "rensei_session": str(session.pk)}


def _spec(session: Session) -> SandboxSpec:
    timeout = session.pool.config.get("timeoutSeconds") if session.pool else None
    return SandboxSpec(
        session_id=str(session.pk),
        request_id=str(session.request_id),
        org_slug=session.org.slug,
        env=session_env(session),
        timeout_seconds=timeout if isinstance(timeout, int) else None,
        metadata={
            "rensei_org": session.org.slug,
            "rensei_session": str(session.pk),
            "rensei_request": str(session.request_id),
        },
    )


def _find_existing(provider: Provider, session: Session) -> SandboxHandle | None:
    """The sandbox an earlier try of this very request made, if any (crash recovery)."""
    found = provider.list_sandboxes(
        {**_made_for(session), "rensei_request": str(session.request_id)}
    )
    if not found:
        return None
    keep, *extra = sorted(found, key=lambda i: (i.started_at is None, i.started_at))
    for info in extra:  # cannot happen with E2B's idempotency key; never leak one anyway
        provider.terminate(info.sandbox_id)
    return handle_from_info(keep)


def handle_from_info(info: SandboxInfo) -> SandboxHandle:
    return SandboxHandle(
        sandbox_id=info.sandbox_id,
        template=info.template,
        vcpu=info.vcpu,
        memory_mb=info.memory_mb,
        started_at=info.started_at or timezone.now(),
    )


def record_handle(session: Session, handle: SandboxHandle, note: str) -> bool:
    """provisioning → running with the handle, and the running interval opened: one
    transaction, and only if nobody recorded a sandbox first."""
    now = timezone.now()
    # Bill from the sandbox's own start, bounded by when we asked and by now (clock skew).
    started = min(now, max(handle.started_at, session.created_at))
    with transaction.atomic():
        won = transition_where(
            session,
            S.RUNNING,
            expected=[S.PROVISIONING],
            where={"sandbox_id": ""},
            values={
                "sandbox_id": handle.sandbox_id,
                "template": handle.template[:128],
                "vcpu": handle.vcpu or None,
                "memory_mb": handle.memory_mb or None,
                "last_error": "",
            },
            note=f"sandbox {handle.sandbox_id} {note}",
        )
        if won:
            open_interval(session, started)
    return won


def _provision_failed(
    session: Session, exc: ProviderError, *, retry: int, can_retry: bool
) -> float | None:
    pool = session.pool
    pool_name = pool.name if pool else "?"
    if not exc.permanent and can_retry:
        wait = backoff(retry, exc.retry_after)
        note = f"{exc.message} (attempt {session.attempts} of {MAX_PROVISION_ATTEMPTS})"
        Session.objects.filter(pk=session.pk, state=S.PROVISIONING).update(last_error=note)
        return wait
    message = exc.message if exc.permanent else f"{exc.message} (gave up after {retry + 1} tries)"
    outcome = dispatch(session, failure=(pool_name, message))
    if outcome != NOOP:  # NOOP: the session moved on (terminated) while we called
        audit(
            session,
            "session.failed_over" if outcome != FAILED else "session.failed",
            pool=pool_name,
            reason=message,
            outcome=outcome,
        )
        if pool is not None:
            dispatch_waiting(pool)  # the slot this session held on the failed pool is free
    return None


def _test_crash_hook() -> None:
    path = os.environ.get("RENSEI_TEST_CRASH_AFTER_CREATE")
    if not path:
        return
    try:
        with open(path, "r+") as counter:
            fcntl.flock(counter, fcntl.LOCK_EX)  # two worker children may race for it
            left = int(counter.read().strip() or 0)
            if left <= 0:
                return
            counter.seek(0)
            counter.truncate()
            counter.write(str(left - 1))
    except (OSError, ValueError):
        return
    log.warning("RENSEI_TEST_CRASH_AFTER_CREATE: killing worker process %s", os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


# --- pause / resume / terminate ----------------------------------------------------------


def _free_slot(session: Session) -> None:
    """A slot may have freed on the session's pool: start waiting sessions and resumes."""
    if session.pool_id is not None and session.pool is not None:
        dispatch_waiting(session.pool)


def mark_lost(session: Session, reason: str, *, at: datetime | None = None) -> bool:
    """The sandbox is gone: ``lost``, with the running interval closed (and billed)."""
    now = at or timezone.now()
    with transaction.atomic():
        won = transition(
            session,
            S.LOST,
            expected=[S.RUNNING, S.PAUSED, S.PAUSING, S.RESUMING],
            note=reason,
            at=now,
            last_error=reason,
        )
        if won:
            close_open_interval(session, now, "lost")
    if won:
        audit(session, "session.lost", sandbox=session.sandbox_id, reason=reason)
        _free_slot(session)
    return won


def mark_paused(session: Session, note: str, expected: list[str]) -> bool:
    """→ paused, closing the running interval (paused time costs nothing)."""
    now = timezone.now()
    with transaction.atomic():
        won = transition(session, S.PAUSED, expected=expected, note=note, at=now, last_error="")
        if won:
            close_open_interval(session, now, "pause")
    if won:
        audit(session, "session.paused", sandbox=session.sandbox_id, note=note)
        _free_slot(session)
    return won


def mark_running(
    session: Session, note: str, expected: list[str], sandbox_id: str | None = None
) -> bool:
    """→ running, opening a running interval."""
    now = timezone.now()
    values: dict[str, Any] = {"last_error": ""}
    if sandbox_id:
        values["sandbox_id"] = sandbox_id
    with transaction.atomic():
        won = transition(session, S.RUNNING, expected=expected, note=note, at=now, **values)
        if won:
            open_interval(session, now)
    if won:
        audit(session, "session.resumed", sandbox=session.sandbox_id, note=note)
    return won


def _action_failed(
    session: Session,
    exc: ProviderError,
    *,
    state: str,
    back_to: str,
    what: str,
    retry: int,
    can_retry: bool,
) -> float | None:
    if _is_gone(exc):
        mark_lost(session, f"The sandbox was gone when {what}: {exc.message}")
        return None
    if not exc.permanent and can_retry:
        Session.objects.filter(pk=session.pk, state=state).update(
            last_error=f"{what.capitalize()} failed, will retry: {exc.message}"
        )
        return backoff(retry, exc.retry_after)
    message = f"{what.capitalize()} failed: {exc.message}"
    if transition(session, back_to, expected=[state], note=message, last_error=message):
        audit(session, f"session.{what.split()[0]}_failed", reason=message)
        if back_to == S.PAUSED:
            _free_slot(session)  # resuming held a slot; paused does not
    return None


def pause(session_id: int, *, retry: int = 0, can_retry: bool = True) -> float | None:
    session = _load(session_id)
    if session is None or session.state != S.PAUSING or session.pool is None:
        return None
    try:
        for_pool(session.pool).pause(session.sandbox_id)
    except ProviderError as exc:
        return _action_failed(
            session,
            exc,
            state=S.PAUSING,
            back_to=S.RUNNING,
            what="pausing",
            retry=retry,
            can_retry=can_retry,
        )
    mark_paused(session, "paused", expected=[S.PAUSING])
    return None


def resume(session_id: int, *, retry: int = 0, can_retry: bool = True) -> float | None:
    session = _load(session_id)
    if session is None or session.state != S.RESUMING or session.pool is None:
        return None
    timeout = session.pool.config.get("timeoutSeconds")
    try:
        handle = for_pool(session.pool).resume(
            session.sandbox_id, timeout_seconds=timeout if isinstance(timeout, int) else None
        )
    except ProviderError as exc:
        return _action_failed(
            session,
            exc,
            state=S.RESUMING,
            back_to=S.PAUSED,
            what="resuming",
            retry=retry,
            can_retry=can_retry,
        )
    mark_running(session, "resumed", expected=[S.RESUMING], sandbox_id=handle.sandbox_id)
    return None


def terminate(session_id: int, *, retry: int = 0, can_retry: bool = True) -> float | None:
    """Kill the sandbox (and any a racing provision made), close the interval, terminated."""
    session = _load(session_id)
    if session is None or session.state != S.TERMINATING:
        return None
    if session.pool is not None:
        try:
            provider = for_pool(session.pool)
            if session.sandbox_id:
                provider.terminate(session.sandbox_id)
            # A provision job may have created a sandbox it has not recorded yet; it kills
            # its own when its update fails, this catches one whose job died.
            for info in provider.list_sandboxes(_made_for(session)):
                provider.terminate(info.sandbox_id)
        except ProviderError as exc:
            if not _is_gone(exc):
                message = f"Terminating failed: {exc.message}"
                Session.objects.filter(pk=session.pk, state=S.TERMINATING).update(
                    last_error=message
                )
                if not exc.permanent and can_retry:
                    return backoff(retry, exc.retry_after)
                # Stay terminating: the reconciler re-enqueues this job later.
                audit(session, "session.terminate_failed", reason=message)
                return None
    now = timezone.now()
    with transaction.atomic():
        won = transition(
            session,
            S.TERMINATED,
            expected=[S.TERMINATING],
            at=now,
            note="terminated",
            last_error="",
        )
        if won:
            close_open_interval(session, now, "terminate")
    if won:
        audit(session, "session.terminated", sandbox=session.sandbox_id)
        _free_slot(session)
    return None


# --- exec --------------------------------------------------------------------------------


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
        CommandRun.objects.filter(pk=run_id, state=CommandRunState.RUNNING).update(
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
    CommandRun.objects.filter(pk=run_id, state=CommandRunState.RUNNING).update(**fields)
    audit(
        session,
        "session.command_finished",
        run=run_id,
        state=fields["state"],
        exit_code=fields.get("exit_code"),
    )
