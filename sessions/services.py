"""What pages, the JSON API, commands and the demo call to create and drive sessions.

Every function validates first (``SessionRequestError`` before anything is saved), changes
state through the state machine's conditional updates, audits, and enqueues the slow part
as a Celery job once the transaction commits (``sessions.enqueue``; ids only, secrets
travel encrypted in the row). The actions live in ``sessions.actions``, re-exported here.

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
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from pools.kinds import parse_provides
from pools.models import CapacityPool
from rensei import inputs
from rensei.audit import record
from rensei.crypto import encrypt
from rensei.models import Channel, Organization
from sessions import admission, enqueue
from sessions.actions import allowed_actions as allowed_actions
from sessions.actions import request_pause as request_pause
from sessions.actions import request_resume as request_resume
from sessions.actions import request_terminate as request_terminate
from sessions.audit import describe
from sessions.dispatch import dispatch_new
from sessions.env import command_env as command_env
from sessions.env import encrypt_env
from sessions.env import session_env as session_env
from sessions.models import CommandRun, Issue, Session, SessionState

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


class BudgetBlocked(SessionRequestError):
    """A budget refuses new sessions in this scope (``sessions.admission``); the block says
    which budget and its state."""

    def __init__(self, block: admission.Block) -> None:
        super().__init__(block.reason, "budget")
        self.block = block


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
    issue_budget_usd: Decimal | None = None,
) -> Session:
    """Create a session ``queued`` and dispatch it (a provision job runs after commit).

    ``issue_budget_usd`` sets the issue's own budget (the dispatcher's ``issue.budget_usd``).
    A budget that blocks the org, the issue or the requested pool refuses the session
    (``BudgetBlocked``, nothing saved).

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
    if issue_budget_usd is not None:
        if not key:
            raise SessionRequestError("An issue budget needs an issue key.", "issue_budget_usd")
        issue_budget_usd = _checked(admission.UsdAmount, issue_budget_usd, "issue_budget_usd")

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
                if issue_budget_usd is not None:
                    admission.set_issue_budget(issue, issue_budget_usd, actor, channel)
            blocks = admission.blocks(org.pk, issue.pk if issue is not None else None)
            pinned = [
                b for b in blocks.pools.values() if pool_name and b.budget["pool"] == pool_name
            ]
            refusal = blocks.scope or (pinned[0] if pinned else None)
            if refusal is not None:
                raise BudgetBlocked(refusal)
            session = Session(
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
            # Saved and routed at once: inserted already provisioning when a pool takes it.
            dispatch_new(session, blocks, created_note=f"created via {channel}")
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
    except BudgetBlocked as exc:
        admission.refused(exc.block, key, channel)  # outside the rolled-back transaction
        raise
    except IntegrityError:
        # Two requests with one idempotency key raced: the other one created it.
        if idempotency_key:
            existing = _existing_for_key(org, idempotency_key, body_hash)
            if existing is not None:
                return existing
        raise
    return session  # carries what was written (the state machine's updates included)


# --- actions -----------------------------------------------------------------------------


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
        enqueue.send(enqueue.EXEC, run.pk)
    return run


# --- counts ------------------------------------------------------------------------------


def dashboard_counts(org: Organization) -> dict[str, int]:
    """Running, paused, starting (queued + provisioning) and failed-or-lost in the last 24 h,
    in one query.

    Only the rows that can count are read: the WHERE names their states, so the database
    takes them from the (org, state, …) index instead of filtering every session the org
    ever had (a month of history is most of them, and none of it counts here).
    """
    since = timezone.now() - timedelta(hours=24)
    rows = Session.objects.filter(org=org).filter(
        Q(state__in=[S.RUNNING, S.PAUSED, S.QUEUED, S.PROVISIONING])
        | Q(state__in=[S.FAILED, S.LOST], state_changed_at__gte=since)
    )
    counts = rows.aggregate(
        running=Count("id", filter=Q(state=S.RUNNING)),
        paused=Count("id", filter=Q(state=S.PAUSED)),
        starting=Count("id", filter=Q(state__in=[S.QUEUED, S.PROVISIONING])),
        failed_24h=Count("id", filter=Q(state__in=[S.FAILED, S.LOST], state_changed_at__gte=since)),
    )
    return {name: int(value or 0) for name, value in counts.items()}
