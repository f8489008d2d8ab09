"""What pages, the JSON API, commands and the demo call to create and drive sessions.

Every function validates first (``SessionRequestError`` before anything is saved), changes
state through the state machine's conditional updates, audits, and enqueues the slow part
as a Celery job with ``delay_on_commit`` (ids only; secrets travel encrypted in the row).

    create_session(org, *, issue_key, runtime_kinds, requirement_kinds, ...) -> Session
    request_pause(session, actor, channel) -> bool
    request_resume(session, actor, channel) -> bool
    request_terminate(session, actor, channel) -> bool
    allowed_actions(session) -> set[str]          # {"pause", "resume", "terminate", "exec"}
    run_command(session, *, command, env, timeout, actor, channel) -> CommandRun
    dashboard_counts(org) -> {"running", "paused", "starting", "failed_24h"}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from pools.kinds import parse_provides
from pools.models import CapacityPool
from pools.providers import provider_class
from rensei import inputs
from rensei.audit import actor_label, record
from rensei.crypto import decrypt, encrypt
from rensei.models import Channel, Organization
from sessions.dispatch import NOOP, WAITING, dispatch, dispatch_waiting, resume_or_wait
from sessions.models import (
    LIVE_STATES,
    CommandRun,
    Issue,
    Session,
    SessionState,
)
from sessions.state import record_created, transition

S = SessionState

# The input rules live in rensei/inputs.py (the API, the forms and the pool config use them
# too); these names are kept for the callers that read them here.
ISSUE_KEY_RE = inputs.ISSUE_KEY_RE
DEFAULT_EXEC_TIMEOUT = inputs.DEFAULT_EXEC_TIMEOUT


class SessionRequestError(ValueError):
    """Bad input for a session request; ``field`` names the offending input (or None)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class IdempotencyConflict(Exception):
    """The idempotency key was used before with a different request body."""

    def __init__(self, session: Session) -> None:
        super().__init__(
            "This Idempotency-Key was already used with a different request body "
            f"(session {session.pk})."
        )
        self.session = session


# --- env values: encrypted at rest, names shown ------------------------------------------


def validate_env(env: Any, field: str = "env") -> dict[str, str]:
    """A dict of NAME → value strings (the one env rule), or ``SessionRequestError``."""
    if env is None:
        return {}
    return _checked(inputs.EnvMap, env, field)  # type: ignore[no-any-return]


def _checked(rule: Any, value: Any, field: str) -> Any:
    try:
        return inputs.check(rule, value)
    except inputs.InputError as exc:
        raise SessionRequestError(exc.message, field) from None


def encrypt_env(env: Mapping[str, str]) -> dict[str, str]:
    """NAME → encrypted value: pages can list names without ever holding a value."""
    return {name: encrypt(value) for name, value in env.items()}


def session_env(session: Session) -> dict[str, str]:
    """The session's env in clear, for the job that hands it to the sandbox. Never render."""
    return {name: decrypt(token) for name, token in (session.env or {}).items()}


def command_env(run: CommandRun) -> dict[str, str]:
    if not run.env_encrypted:
        return {}
    loaded: dict[str, str] = json.loads(decrypt(run.env_encrypted))
    return loaded


# --- create ------------------------------------------------------------------------------


def _kinds(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, tuple):
        value = list(value)
    kinds: list[str] = _checked(inputs.KindList, value, field)
    try:
        return parse_provides(kinds)
    except ValueError as exc:
        raise SessionRequestError(str(exc), field) from None


def _issue_fields(key: str | None, title: str, url: str) -> tuple[str, str, str]:
    key = (key or "").strip()
    title = (title or "").strip()
    url = (url or "").strip()
    if not key:
        if title or url:
            raise SessionRequestError("An issue title or URL needs an issue key.", "issue_key")
        return "", "", ""
    _checked(inputs.IssueKey, key, "issue_key")
    _checked(inputs.IssueTitle, title, "issue_title")
    _checked(inputs.IssueUrl, url, "issue_url")
    return key, title, url


def _existing_for_key(org: Organization, key: str, body_hash: str) -> Session | None:
    session = Session.objects.filter(org=org, api_idempotency_key=key).first()
    if session is None:
        return None
    if session.api_body_hash != body_hash:
        raise IdempotencyConflict(session)
    return session


def create_session(
    org: Organization,
    *,
    issue_key: str | None,
    issue_title: str = "",
    issue_url: str = "",
    runtime_kinds: list[str],
    requirement_kinds: list[str],
    env: dict[str, str] | None = None,
    pool_name: str | None = None,
    actor: Any = None,
    channel: str = Channel.WEB,
    idempotency_key: str = "",
    body_hash: str = "",
) -> Session:
    """Create a session ``queued`` and dispatch it (a provision job runs after commit).

    A session no pool can run comes back ``failed`` with the reasons in ``last_error``; one
    whose pools are all at their cap comes back ``queued`` (it starts when a slot frees).
    Raises ``SessionRequestError`` on bad input (nothing saved) and ``IdempotencyConflict``
    when ``idempotency_key`` was used with another ``body_hash``.
    """
    idempotency_key = (idempotency_key or "").strip()
    if len(idempotency_key) > 255:
        raise SessionRequestError("The idempotency key must be at most 255 characters.", "key")
    if idempotency_key:
        existing = _existing_for_key(org, idempotency_key, body_hash)
        if existing is not None:
            return existing

    key, title, url = _issue_fields(issue_key, issue_title, issue_url)
    runtime = _kinds(runtime_kinds, "runtime_kinds")
    requirement = _kinds(requirement_kinds, "requirement_kinds")
    clean_env = validate_env(env)
    pool_name = (pool_name or "").strip()
    if pool_name and not CapacityPool.objects.filter(org=org, name=pool_name).exists():
        raise SessionRequestError(f"There is no pool named “{pool_name[:100]}”.", "pool")
    if channel not in Channel.values:
        raise SessionRequestError(f"Unknown channel {channel!r}.", "channel")

    try:
        with transaction.atomic():
            issue = None
            if key:
                issue, made = Issue.objects.get_or_create(
                    org=org, key=key, defaults={"title": title, "url": url}
                )
                changed = {
                    name: value
                    for name, value in (("title", title), ("url", url))
                    if value and getattr(issue, name) != value
                }
                if not made and changed:
                    Issue.objects.filter(pk=issue.pk).update(**changed)
            session = Session.objects.create(
                org=org,
                issue=issue,
                runtime_kinds=runtime,
                requirement_kinds=requirement,
                env=encrypt_env(clean_env),
                requested_pool=pool_name,
                api_idempotency_key=idempotency_key,
                api_body_hash=body_hash if idempotency_key else "",
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            record_created(session, note=f"created via {channel}")
            record(
                org=org,
                action="session.created",
                target=describe(session),
                actor=actor,
                channel=channel,
                detail={
                    "issue": key,
                    "runtime_kinds": runtime,
                    "requirement_kinds": requirement,
                    "pool": pool_name,
                    "env_names": sorted(clean_env),
                },
            )
            dispatch(session)
    except IntegrityError:
        # Two requests with one idempotency key raced: the other one created it.
        if idempotency_key:
            existing = _existing_for_key(org, idempotency_key, body_hash)
            if existing is not None:
                return existing
        raise
    session.refresh_from_db()
    return session


def describe(session: Session) -> str:
    """The audit target: ``session 12 (ENG-142)``."""
    issue = session.issue.key if session.issue_id and session.issue else ""
    return f"session {session.pk}" + (f" ({issue})" if issue else "")


# --- actions -----------------------------------------------------------------------------


def allowed_actions(session: Session) -> set[str]:
    """What the UI/API may offer now, from the state and the provider's capabilities."""
    state = session.state
    if state not in LIVE_STATES or state == S.TERMINATING:
        return set()
    actions = {"terminate"}
    caps = None
    if session.provider:
        try:
            caps = provider_class(session.provider).capabilities
        except LookupError:
            caps = None
    if state == S.RUNNING and caps is not None:
        if caps.supports_pause_resume:
            actions.add("pause")
        if caps.supports_exec:
            actions.add("exec")
    if state == S.PAUSED and caps is not None and caps.supports_pause_resume:
        actions.add("resume")
    return actions


def _request(
    session: Session,
    *,
    action: str,
    to: str,
    expected: list[str],
    actor: Any,
    channel: str,
) -> bool:
    if action not in allowed_actions(session):
        # The in-memory row may be stale; the conditional update below is the real check,
        # but an action the provider cannot do is refused here.
        session.refresh_from_db(fields=["state", "provider"])
        if action not in allowed_actions(session):
            return False
    label = actor_label(actor, channel)  # "API token <name>" for API calls
    with transaction.atomic():
        if not transition(session, to, expected=expected, note=f"{action} requested by {label}"):
            return False
        record(
            org=session.org,
            action=f"session.{action}_requested",
            target=describe(session),
            actor=actor,
            channel=channel,
        )
        from sessions import tasks

        job = {
            "pause": tasks.pause_session,
            "resume": tasks.resume_session,
            "terminate": tasks.terminate_session,
        }[action]
        tasks.enqueue(job, session.pk)
    return True


def request_pause(session: Session, actor: Any = None, channel: str = Channel.WEB) -> bool:
    """running → pausing, then the pause job. False when the state did not allow it."""
    return _request(
        session, action="pause", to=S.PAUSING, expected=[S.RUNNING], actor=actor, channel=channel
    )


def request_resume(session: Session, actor: Any = None, channel: str = Channel.WEB) -> bool:
    """paused → resuming, then the resume job; False when the state did not allow it.

    A resume takes a slot under the pool's soft cap like a new session: at the cap the
    session stays ``paused`` with the resume in line (``resume_requested_at``; the page and
    the API say why and where in line) and resumes by itself when a slot frees. Asking
    again while in line keeps the place and returns True.
    """
    if "resume" not in allowed_actions(session):
        session.refresh_from_db(fields=["state", "provider"])
        if "resume" not in allowed_actions(session):
            return False
    label = actor_label(actor, channel)  # "API token <name>" for API calls
    with transaction.atomic():
        outcome = resume_or_wait(session, note=f"resume requested by {label}")
        if outcome == NOOP:
            return False
        pool = session.pool
        detail = {"waiting_for_slot": pool.name} if outcome == WAITING and pool else {}
        record(
            org=session.org,
            action="session.resume_requested",
            target=describe(session),
            actor=actor,
            channel=channel,
            detail=detail or None,
        )
        if outcome == WAITING and pool is not None:
            # A slot that freed while this request counted (a job committing in between,
            # which looked for waiting requests before this one was visible) is offered again
            # once the request is: in line, oldest first.
            transaction.on_commit(lambda: dispatch_waiting(pool))
    return True


def request_terminate(session: Session, actor: Any = None, channel: str = Channel.WEB) -> bool:
    """Any live state → terminating, then the terminate job (which also stops in-flight
    provisioning). False when already terminating or ended."""
    expected = sorted(LIVE_STATES - {S.TERMINATING})
    return _request(
        session,
        action="terminate",
        to=S.TERMINATING,
        expected=expected,
        actor=actor,
        channel=channel,
    )


def run_command(
    session: Session,
    *,
    command: str,
    env: dict[str, str] | None = None,
    timeout: int = DEFAULT_EXEC_TIMEOUT,
    actor: Any = None,
    channel: str = Channel.WEB,
) -> CommandRun:
    """Queue a one-shot command in the running sandbox; the exec job fills in the result.

    Env values are kept encrypted on the run only until the job has used them; the run
    keeps their names. Raises ``SessionRequestError`` on bad input or a session that is not
    running.
    """
    _checked(inputs.Command, command, "command")
    timeout = _checked(inputs.ExecTimeout, timeout, "timeout")
    clean_env = validate_env(env)
    session.refresh_from_db(fields=["state", "provider", "sandbox_id"])
    if "exec" not in allowed_actions(session):
        raise SessionRequestError(
            f"Commands run only in a running session; this one is {session.state}.", "command"
        )
    with transaction.atomic():
        run = CommandRun.objects.create(
            session=session,
            command=command,
            env_names=sorted(clean_env),
            env_encrypted=encrypt(json.dumps(clean_env)) if clean_env else "",
            timeout_seconds=timeout,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        record(
            org=session.org,
            action="session.command_run",
            target=describe(session),
            actor=actor,
            channel=channel,
            detail={"run": run.pk, "command": command[:200], "env_names": run.env_names},
        )
        from sessions.tasks import enqueue, exec_command

        enqueue(exec_command, run.pk)
    return run


# --- counts ------------------------------------------------------------------------------


def dashboard_counts(org: Organization) -> dict[str, int]:
    """Running, paused, starting (queued + provisioning) and failed-or-lost in the last 24 h,
    in one query."""
    since = timezone.now() - timedelta(hours=24)
    counts = Session.objects.filter(org=org).aggregate(
        running=Count("id", filter=Q(state=S.RUNNING)),
        paused=Count("id", filter=Q(state=S.PAUSED)),
        starting=Count("id", filter=Q(state__in=[S.QUEUED, S.PROVISIONING])),
        failed_24h=Count("id", filter=Q(state__in=[S.FAILED, S.LOST], state_changed_at__gte=since)),
    )
    return {name: int(value or 0) for name, value in counts.items()}
