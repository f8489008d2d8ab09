"""The JSON API the dispatcher uses: create sessions, read them back, act on them, exec.

A django-ninja ``Router``; the ``NinjaAPI`` that mounts it (error bodies, the OpenAPI
document at /api/v1/openapi.json) is in sessions/api_urls.py, the schemas in
sessions/schemas.py, the route guard in sessions/api_base.py. Every route authenticates
with ``Authorization: Bearer <token>`` (an org API token) before anything else, so an
unknown route or method answers 401 to a stranger too; then the method (405), then unknown
query parameters (400 naming them), then the session in the path (the token's org is the
only org a call can see: another org's ids answer 404, whatever the body), then the
schemas (400 naming the field), never a 500.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from ninja import Header, Path, Query, Status

from rensei import inputs as inp
from rensei.models import Channel
from sessions import schemas as sc
from sessions import services
from sessions.api_base import (
    HTTP_METHODS,
    LOCATION,
    RESUME_NOTE,
    RUN_LINKS,
    SESSION_LINKS,
    UNKNOWN_QUERY,
    ApiRouter,
    BearerToken,
    RunId,
    SessionId,
    bad_query,
    described,
    find_session,
    org_of,
    session_of,
)
from sessions.api_errors import error
from sessions.costs import cost_so_far
from sessions.models import CommandRun, Session
from sessions.queue import QueueStatus, queue_statuses

ACTIONS: dict[str, Callable[..., bool]] = {
    "pause": services.request_pause,
    "resume": services.request_resume,
    "terminate": services.request_terminate,
}
# Engine field names → the API's (dotted) names for the same input.
ENGINE_FIELDS = {
    "issue_key": "issue.key",
    "issue_title": "issue.title",
    "issue_url": "issue.url",
    "pool_name": "pool",
    "issue_budget_usd": "issue.budget_usd",
    "key": "Idempotency-Key",
}
router = ApiRouter(auth=BearerToken())
IdempotencyKey = Header(None, alias="Idempotency-Key")


# --- representations -----------------------------------------------------------------------


def session_json(
    session: Session,
    queue: dict[int, QueueStatus] | None = None,
    costs: dict[int, Decimal] | None = None,
) -> dict[str, Any]:
    """``queue`` and ``costs``: the page's ``queue_statuses`` and ``cost_so_far`` when
    serialising many (flat query count)."""
    issue = session.issue
    if queue is None:
        queue = queue_statuses([session])
    if costs is None:
        costs = cost_so_far([session], timezone.now())
    status = queue.get(session.pk)
    cost = costs.get(session.pk)
    return {
        "id": session.pk,
        "state": session.state,
        "issue": (
            {"key": issue.key, "title": issue.title, "url": issue.url}
            if issue is not None
            else None
        ),
        "pool": session.pool.name if session.pool is not None else None,
        "requested_pool": session.requested_pool or None,
        "provider": session.provider,
        "runtime_kinds": list(session.runtime_kinds or []),
        "requirement_kinds": list(session.requirement_kinds or []),
        # Values may be secrets: names only, as on the pages.
        "env_names": sorted(session.env or {}),
        "sandbox_id": session.sandbox_id or None,
        "template": session.template or None,
        "vcpu": session.vcpu,
        "memory_mb": session.memory_mb,
        "attempts": session.attempts,
        "last_error": session.last_error,
        "routing": session.routing if isinstance(session.routing, dict) else {},
        # Why it waits (queued, or a resume at the pool's cap) and its place in line.
        "queue": status.as_json() if status is not None else None,
        "request_id": str(session.request_id),
        "allowed_actions": sorted(services.allowed_actions(session)),
        "cost_so_far": str(cost) if cost is not None else None,
        "created_at": session.created_at,
        "state_changed_at": session.state_changed_at,
        "started_at": session.started_at,
        "ended_at": session.ended_at,
    }


def run_json(run: CommandRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "session": run.session_id,
        "command": run.command,
        "env_names": list(run.env_names or []),
        "timeout": run.timeout_seconds,
        "state": run.state,
        "exit_code": run.exit_code,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "stdout_truncated": run.stdout_truncated,
        "stderr_truncated": run.stderr_truncated,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def _engine_error(exc: services.SessionRequestError) -> HttpResponse:
    field = ENGINE_FIELDS.get(exc.field or "", exc.field or "body")
    return error(400, str(exc), {field: str(exc)})


# --- routes --------------------------------------------------------------------------------

NOT_FOUND_SESSION = {"description": "No such session in the token's org."}


@router.get(
    "/sessions",
    url_name="api_sessions",
    operation_id="listSessions",
    summary="List sessions, newest first",
    tags=["sessions"],
    response={200: sc.SessionList, 400: sc.Error, 401: sc.Error, 403: sc.Error},
    openapi_extra=described(
        "sessions:read",
        s200={"description": "A page of sessions."},
        s400=bad_query("A query parameter is invalid or unknown (named in `fields`)."),
    ),
)
def list_sessions(request: HttpRequest, filters: Query[sc.SessionFilters]) -> dict[str, Any]:
    sessions = Session.objects.filter(org=org_of(request)).select_related("issue", "pool")
    sessions = sessions.order_by("-id")
    if filters.state is not None:
        sessions = sessions.filter(state=filters.state)
    if filters.issue is not None:
        sessions = sessions.filter(issue__key=filters.issue)
    # Keyset pagination: the cursor is the last id of the previous page (ids only grow).
    if filters.cursor:
        sessions = sessions.filter(pk__lt=filters.cursor)
    rows = list(sessions[: filters.limit + 1])
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    queue = queue_statuses(rows)
    costs = cost_so_far(rows, timezone.now())
    return {
        "results": [session_json(s, queue, costs) for s in rows],
        "next_cursor": rows[-1].pk if more else None,
    }


@router.post(
    "/sessions",
    url_name="api_sessions",
    operation_id="createSession",
    summary="Create a session",
    description="Queues a session and routes it to a pool. With an Idempotency-Key, "
    "repeating the same body returns the same session (200); a different body under the "
    "same key is a 409." + UNKNOWN_QUERY,
    tags=["sessions"],
    response={
        200: sc.Session,
        202: sc.Session,
        400: sc.Error,
        401: sc.Error,
        402: sc.BudgetRefusal,
        403: sc.Error,
        409: sc.Error,
    },
    openapi_extra=described(
        "sessions:write",
        s202={"description": "Created and queued.", "headers": LOCATION, "links": SESSION_LINKS},
        s402={
            "description": "A `block` budget refuses new sessions in this scope (the org, "
            "the issue, or the requested pool) until an admin raises it or lifts the block; "
            "`budget` is its state. A session not pinned to a pool routes around a blocked "
            "pool and waits `queued` when only blocked pools could run it (`queue.reason`)."
        },
        s200={
            "description": "A repeat of an earlier request with the same Idempotency-Key and "
            "body: the same session.",
            "headers": {
                "Idempotent-Replayed": {"schema": {"type": "string", "const": "true"}},
                **LOCATION,
            },
            "links": SESSION_LINKS,
        },
        s400=bad_query(
            "The body is not a JSON object, or a field is missing, of the wrong type, or "
            "refused (unknown kind or pool); `fields` names it."
        ),
        s409={"description": "The Idempotency-Key was used with a different body."},
    ),
)
def create_session(
    request: HttpRequest,
    response: HttpResponse,
    payload: sc.SessionCreate,
    idempotency_key: sc.IdempotencyKey | None = IdempotencyKey,
) -> Any:
    org = org_of(request)
    key = idempotency_key or ""
    issue = payload.issue
    replay = bool(key) and Session.objects.filter(org=org, api_idempotency_key=key).exists()
    try:
        session = services.create_session(
            org,
            issue_key=issue.key,
            issue_title=issue.title,
            issue_url=issue.url,
            runtime_kinds=payload.runtime_kinds,
            requirement_kinds=payload.requirement_kinds,
            env=payload.env,
            pool_name=payload.pool,
            actor=None,
            channel=Channel.API,
            idempotency_key=key,
            # The body as sent (already parsed once, so valid JSON): same content, same hash.
            body_hash=canonical_hash(json.loads(request.body)),
            issue_budget_usd=issue.budget_usd,
        )
    except services.BudgetBlocked as exc:
        return error(402, exc.message, {"budget": exc.message}, budget=exc.block.budget)
    except services.SessionRequestError as exc:
        return _engine_error(exc)
    except services.IdempotencyConflict:
        return error(
            409,
            "This Idempotency-Key was already used with a different body.",
            {"Idempotency-Key": "Already used with a different body."},
        )
    response["Location"] = reverse("api_session", args=[session.pk])
    if replay:
        response["Idempotent-Replayed"] = "true"
        return Status(200, session_json(find_session(org, session.pk) or session))
    # Just made, in memory as written (issue and pool included): nothing to read back, and
    # a session that never ran has no cost to look up.
    costs = cost_so_far([session], timezone.now(), never_ran={session.pk})
    return Status(202, session_json(session, costs=costs))


def canonical_hash(data: Any) -> str:
    """SHA-256 of the canonical JSON form: same content, same hash, whatever the key order."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@router.get(
    "/sessions/{int:session_id}",
    url_name="api_session",
    operation_id="getSession",
    summary="Read a session",
    tags=["sessions"],
    response={200: sc.Session, 400: sc.Error, 401: sc.Error, 403: sc.Error, 404: sc.Error},
    openapi_extra=described(
        "sessions:read",
        s200={"description": "The session.", "links": SESSION_LINKS},
        s400=bad_query(),
        s404=NOT_FOUND_SESSION,
    ),
)
def get_session(request: HttpRequest, session_id: Path[SessionId]) -> Any:
    session = session_of(request)
    return session_json(session)


def _action(action: str) -> None:
    def view(request: HttpRequest, session_id: Path[SessionId]) -> Any:
        session = session_of(request)
        if action not in services.allowed_actions(session):
            return Status(
                409,
                {
                    "error": f"Cannot {action} a session that is {session.state}.",
                    "id": session.pk,
                    "state": session.state,
                    "accepted": False,
                },
            )
        accepted = ACTIONS[action](session, None, Channel.API)
        state = Session.objects.filter(pk=session.pk).values_list("state", flat=True).first()
        return Status(202, {"id": session.pk, "state": state, "accepted": bool(accepted)})

    view.__name__ = f"session_{action}"
    router.post(
        f"/sessions/{{int:session_id}}/{action}",
        url_name=f"api_session_{action}",
        operation_id=f"{action}Session",
        summary=f"{action.capitalize()} a session",
        description="Accepted actions run in the background; poll the session's state."
        + (RESUME_NOTE if action == "resume" else "")
        + UNKNOWN_QUERY,
        tags=["sessions"],
        response={
            202: sc.ActionResult,
            400: sc.Error,
            401: sc.Error,
            403: sc.Error,
            404: sc.Error,
            409: sc.ActionConflict,
        },
        openapi_extra=described(
            "sessions:write",
            s202={
                "description": "Accepted (or, with accepted=false, overtaken by another request)."
            },
            s400=bad_query(),
            s404=NOT_FOUND_SESSION,
            s409={"description": "The session's state does not allow this action."},
        ),
    )(view)


for _name in ACTIONS:
    _action(_name)


@router.post(
    "/sessions/{int:session_id}/exec",
    url_name="api_session_exec",
    operation_id="execInSession",
    summary="Run a one-shot command in the session's sandbox",
    description="Starts the command in the background; poll the run." + UNKNOWN_QUERY,
    tags=["exec"],
    response={
        202: sc.CommandRun,
        400: sc.Error,
        401: sc.Error,
        403: sc.Error,
        404: sc.Error,
        409: sc.Error,
    },
    openapi_extra=described(
        "sessions:exec",
        s202={"description": "Started.", "headers": LOCATION, "links": RUN_LINKS},
        s400=bad_query("The body is invalid; `fields` names the field."),
        s404=NOT_FOUND_SESSION,
        s409={"description": "The session's state does not allow running a command."},
    ),
)
def session_exec(
    request: HttpRequest,
    response: HttpResponse,
    payload: sc.ExecRequest,
    session_id: Path[SessionId],
) -> Any:
    session = session_of(request)
    if "exec" not in services.allowed_actions(session):
        return error(409, f"Cannot run a command in a session that is {session.state}.")
    try:
        run = services.run_command(
            session,
            command=payload.command,
            env=payload.env or {},
            timeout=payload.timeout or inp.DEFAULT_EXEC_TIMEOUT,
            actor=None,
            channel=Channel.API,
        )
    except services.SessionRequestError as exc:
        return _engine_error(exc)
    response["Location"] = reverse("api_session_exec_run", args=[session.pk, run.pk])
    return Status(202, run_json(run))


@router.get(
    "/sessions/{int:session_id}/exec/{int:run_id}",
    url_name="api_session_exec_run",
    operation_id="getCommandRun",
    summary="Read a command run: state, exit code and (capped) output",
    tags=["exec"],
    response={200: sc.CommandRun, 400: sc.Error, 401: sc.Error, 403: sc.Error, 404: sc.Error},
    openapi_extra=described(
        "sessions:exec",
        s200={"description": "The run."},
        s400=bad_query(),
        s404={"description": "No such session or run in the token's org."},
    ),
)
def session_exec_run(request: HttpRequest, session_id: Path[SessionId], run_id: Path[RunId]) -> Any:
    session = session_of(request)
    run = (
        CommandRun.objects.filter(session=session, pk=run_id).first()
        if run_id <= inp.MAX_ID
        else None
    )
    if run is None:
        return error(404, "No such command run in this session.")
    return run_json(run)


@router.api_operation(
    list(HTTP_METHODS),
    "/{path:unknown}",
    url_name="api_not_found",
    include_in_schema=False,
)
def not_found(request: HttpRequest, unknown: str) -> Any:
    return error(404, "No such API route. See /api/v1/openapi.json.")
