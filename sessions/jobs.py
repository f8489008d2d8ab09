"""The bodies of the session lifecycle jobs: provision, pause, resume, terminate.

``sessions.tasks`` registers each as a Celery task (ids in, nothing secret in the
arguments) on ``rensei.jobs.ProviderTask``; the logic lives here so the reconciler and
tests can call it directly. Every job is safe to run twice: it starts with a conditional
update, and a loser does nothing. A provider error worth another try raises ``Transient``
(after noting it on the session); the task retries it, and once its retries are spent calls
the job's ``give_up_*`` function. A permanent error is handled here and then: fail over, go
back to the state before, or stay for the reconciler. The exec job is ``sessions.jobs_exec``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db.models import F
from django.utils import timezone

from pools.providers import for_pool
from pools.providers.base import (
    Provider,
    ProviderError,
    SandboxHandle,
    SandboxInfo,
    SandboxSpec,
)
from rensei.credentials import resolved, with_credential
from rensei.failpoints import failpoint
from rensei.jobs import Transient
from sessions.audit import audit
from sessions.dispatch import FAILED, NOOP, dispatch, dispatch_waiting
from sessions.env import session_env
from sessions.jobs_exec import exec_command as exec_command
from sessions.lifecycle import (
    confirm_handle,
    free_slot,
    mark_lost,
    mark_paused,
    mark_running,
    mark_terminated,
    record_handle,
)
from sessions.models import Session, SessionState
from sessions.state import transition

log = logging.getLogger(__name__)
S = SessionState

MAX_PROVISION_ATTEMPTS = 5  # provision job starts per pool, crashes included
TRANSIENT_RETRIES = 4  # so 1 + 4 transient retries fit within the attempt limit
OTHER_RETRIES = 5
# Launches the runner unless it already runs. pgrep -f reads whole command lines, this
# shell's too: "[d]" keeps the pattern from matching itself and the quoted "run" keeps the
# launch from matching (bash drops the quotes, so the runner's own command line matches).
RUNNER_IF_ABSENT = (
    'pgrep -f "[d]onmai agent run" >/dev/null || '
    'nohup donmai agent "run" >/tmp/donmai-runner.log 2>&1 &'
)


def _load(session_id: int) -> Session | None:
    return Session.objects.select_related("org", "pool", "issue").filter(pk=session_id).first()


def _load_with_credential(session_id: int) -> tuple[Session | None, Callable[[], Any]]:
    """The session with its org, pool and issue, and its org's key for the pool's provider:
    one query (the provision job's only read)."""
    rows = with_credential(
        Session.objects.select_related("org", "pool", "issue"), "org_id", "pool__provider"
    )
    session = rows.filter(pk=session_id).first()
    if session is None:
        return None, lambda: None
    if session.pool is not None and session.pool.org_id == session.org_id:
        session.pool.org = session.org  # the same org: no second read through the pool
    encrypted = getattr(session, "credential_encrypted", None)
    last_four = getattr(session, "credential_last_four", None) or ""
    provider = session.pool.provider if session.pool is not None else ""
    return session, lambda: resolved(encrypted, last_four, provider)


def _is_gone(exc: ProviderError) -> bool:
    return exc.status_code == 404


def _transient(exc: ProviderError) -> Transient:
    return Transient(exc.message, retry_after=exc.retry_after)


# --- provision ---------------------------------------------------------------------------


def provision(session_id: int) -> None:
    """Create (or adopt) the sandbox of a ``provisioning`` session.

    Raises ``Transient`` after a transient provider error (the session notes it).
    """
    # The attempt counter moves before anything else, so a job that kills its worker every
    # time still advances it (acks_late redelivers) and stops at the limit.
    if not Session.objects.filter(pk=session_id, state=S.PROVISIONING).update(
        attempts=F("attempts") + 1
    ):
        return
    session, credential = _load_with_credential(session_id)
    if session is None or session.pool is None:
        return
    if session.attempts > MAX_PROVISION_ATTEMPTS:
        # The limit, not the counter: a duplicate delivery of the job (Redis handing it back
        # while the intent sweep re-sent it) may have moved the counter once more before this
        # read, and the reason must not depend on that race.
        reason = f"Gave up after {MAX_PROVISION_ATTEMPTS} attempts"
        reason += f": {session.last_error}" if session.last_error else " (the job kept stopping)."
        if transition(session, S.FAILED, expected=[S.PROVISIONING], note=reason, last_error=reason):
            audit(session, "session.failed", reason=reason)
            discard_sandboxes(session)
            free_slot(session)
        return

    pool = session.pool
    adopted = False
    try:
        provider = for_pool(pool, credential=credential)
        handle = _find_existing(provider, session) if session.attempts > 1 else None
        if handle is not None:
            adopted = True
            if pool.config.get("launchRunnerInline"):
                # The crashed attempt may have died before the provider launched it.
                launch_runner(provider, handle, session)
        else:
            handle = provider.provision(pool.config, _spec(session))
        failpoint("after-create")  # the worst moment to die: a sandbox nobody recorded
    except ProviderError as exc:
        if exc.permanent:
            _fail_over(session, exc.message)
            return
        note = f"{exc.message} (attempt {session.attempts} of {MAX_PROVISION_ATTEMPTS})"
        Session.objects.filter(pk=session.pk, state=S.PROVISIONING).update(last_error=note)
        raise _transient(exc) from exc

    if record_handle(session, handle, note=("adopted" if adopted else "created")):
        audit(
            session,
            "session.provisioned",
            pool=pool.name,
            sandbox=handle.sandbox_id,
            adopted=adopted,
        )
        confirm_handle(session, handle)  # the provider's word on this sandbox, once running
        return
    # Lost the race: someone else recorded this sandbox (the reconciler adopted it), or the
    # session moved on (terminated while we were creating) and nobody will use the sandbox.
    session.refresh_from_db()
    if session.sandbox_id != handle.sandbox_id:
        _kill_quietly(provider, handle.sandbox_id)
        audit(session, "session.sandbox_discarded", sandbox=handle.sandbox_id, state=session.state)


def give_up_provision(session_id: int, *, error: Transient, tries: int) -> None:
    """Transient errors outlasted the retries: fail over to the next pool, as if permanent."""
    session = _load(session_id)
    if session is not None and session.state == S.PROVISIONING:
        _fail_over(session, f"{error.message} (gave up after {tries} tries)")


def _fail_over(session: Session, message: str) -> None:
    pool = session.pool
    pool_name = pool.name if pool else "?"
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


# --- pause / resume / terminate ----------------------------------------------------------


def _action_failed(session: Session, exc: ProviderError, *, state: str, what: str) -> None:
    """A pause or resume call failed: lost if the sandbox is gone; a transient error is
    noted and raised for the retry; a permanent one goes back (``_back_from``)."""
    if _is_gone(exc):
        mark_lost(session, f"The sandbox was gone when {what}: {exc.message}")
        return
    if exc.permanent:
        _back_from(session, state, what, exc.message)
        return
    Session.objects.filter(pk=session.pk, state=state).update(
        last_error=f"{what.capitalize()} failed, will retry: {exc.message}"
    )
    raise _transient(exc) from exc


def _back_from(session: Session, state: str, what: str, error: str) -> None:
    """pausing → running, resuming → paused, with the reason."""
    back_to = S.RUNNING if state == S.PAUSING else S.PAUSED
    message = f"{what.capitalize()} failed: {error}"
    if transition(session, back_to, expected=[state], note=message, last_error=message):
        audit(session, f"session.{what.split()[0]}_failed", reason=message)
        if back_to == S.PAUSED:
            free_slot(session)  # resuming held a slot; paused does not


def pause(session_id: int) -> None:
    session = _load(session_id)
    if session is None or session.state != S.PAUSING or session.pool is None:
        return
    try:
        for_pool(session.pool).pause(session.sandbox_id)
    except ProviderError as exc:
        _action_failed(session, exc, state=S.PAUSING, what="pausing")
        return
    mark_paused(session, "paused", expected=[S.PAUSING])


def give_up_pause(session_id: int, *, error: Transient, tries: int) -> None:
    session = _load(session_id)
    if session is not None:
        _back_from(session, S.PAUSING, "pausing", error.message)


def resume(session_id: int) -> None:
    session = _load(session_id)
    if session is None or session.state != S.RESUMING or session.pool is None:
        return
    timeout = session.pool.config.get("timeoutSeconds")
    try:
        handle = for_pool(session.pool).resume(
            session.sandbox_id, timeout_seconds=timeout if isinstance(timeout, int) else None
        )
    except ProviderError as exc:
        _action_failed(session, exc, state=S.RESUMING, what="resuming")
        return
    mark_running(session, "resumed", expected=[S.RESUMING], sandbox_id=handle.sandbox_id)


def give_up_resume(session_id: int, *, error: Transient, tries: int) -> None:
    session = _load(session_id)
    if session is not None:
        _back_from(session, S.RESUMING, "resuming", error.message)


def terminate(session_id: int) -> None:
    """Kill the sandbox (and any a racing provision made), close the interval, terminated."""
    session = _load(session_id)
    if session is None or session.state != S.TERMINATING:
        return
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
                if not exc.permanent:
                    raise _transient(exc) from exc
                # Stay terminating: the reconciler re-enqueues this job later.
                audit(session, "session.terminate_failed", reason=message)
                return
    mark_terminated(session)


def give_up_terminate(session_id: int, *, error: Transient, tries: int) -> None:
    """Stay terminating (the reason is on the session): the reconciler re-enqueues the job."""
    session = _load(session_id)
    if session is not None and session.state == S.TERMINATING:
        audit(session, "session.terminate_failed", reason=f"Terminating failed: {error.message}")
