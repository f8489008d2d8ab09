"""The JSON API the dispatcher uses: create sessions, read them back, act on them, exec.

Every route authenticates with ``Authorization: Bearer <token>`` (an org API token) before
anything else, so an unknown route or method answers 401 to a stranger too. The token's
org is the only org a call can see: another org's ids answer 404. Errors are always JSON,
``{"error": "...", "fields": {"field": "message"}}``; bad input is a 400 naming the field,
never a 500. The published description of all of this is ``sessions/api_schema.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from rensei import audit
from rensei.models import ApiToken, Channel, Organization
from sessions import api_input as inp
from sessions import services
from sessions.api_schema import openapi_document
from sessions.models import CommandRun, Session, SessionState
from sessions.queue import QueueStatus, queue_statuses

ApiView = Callable[..., HttpResponse]
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
    "key": "Idempotency-Key",
}


def error(
    status: int, message: str, fields: dict[str, str] | None = None, **extra: Any
) -> JsonResponse:
    body: dict[str, Any] = {"error": message, **extra}
    if fields:
        body["fields"] = fields
    return JsonResponse(body, status=status)


def authenticate(request: HttpRequest) -> ApiToken | None:
    from rensei.tokens import authenticate as token_for

    return token_for(request.headers.get("Authorization", ""))


def api_view(*methods: str) -> Callable[[ApiView], ApiView]:
    """Token auth first, then the method check, then the view with the token's org.

    The view is called as ``view(request, org, **kwargs)``; InvalidInput becomes a 400.
    """

    def decorator(view: ApiView) -> ApiView:
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            token = authenticate(request)
            if token is None:
                response = error(401, "Missing, unknown or revoked API token.")
                response["WWW-Authenticate"] = 'Bearer realm="rensei"'
                return response
            if request.method not in methods:
                response = error(405, f"Method {request.method} is not allowed here.")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                with audit.acting_token(token.name):
                    return view(request, token.org, *args, **kwargs)
            except inp.InvalidInput as exc:
                return error(400, exc.message, exc.fields)

        wrapped.api_methods = methods  # type: ignore[attr-defined]
        return wrapped

    return decorator


# --- representations -----------------------------------------------------------------------


def session_json(session: Session, queue: dict[int, QueueStatus] | None = None) -> dict[str, Any]:
    """``queue``: the page's ``queue_statuses`` when serialising many (flat query count)."""
    issue = session.issue
    if queue is None:
        queue = queue_statuses([session])
    status = queue.get(session.pk)
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


def _session(org: Organization, session_id: int) -> Session | None:
    if session_id > inp.MAX_ID:
        return None
    return Session.objects.select_related("issue", "pool").filter(org=org, pk=session_id).first()


def _no_session() -> JsonResponse:
    return error(404, "No such session.")


# --- routes --------------------------------------------------------------------------------


@api_view("GET", "POST")
def sessions_collection(request: HttpRequest, org: Organization) -> HttpResponse:
    if request.method == "POST":
        return _create(request, org)
    return _list(request, org)


def _list(request: HttpRequest, org: Organization) -> HttpResponse:
    state = inp.query_text(request, "state", max_length=20)
    if state is not None and state not in SessionState.values:
        raise inp.bad("state", f"Must be one of: {', '.join(SessionState.values)}.")
    issue = inp.query_text(request, "issue", max_length=64)
    limit = inp.query_int(request, "limit", default=25, minimum=1, maximum=100)
    # Keyset pagination: the cursor is the last id of the previous page (ids only grow).
    cursor = inp.query_int(request, "cursor", default=0, minimum=1, maximum=inp.MAX_ID)

    sessions = Session.objects.filter(org=org).select_related("issue", "pool").order_by("-id")
    if state is not None:
        sessions = sessions.filter(state=state)
    if issue is not None:
        sessions = sessions.filter(issue__key=issue)
    if cursor:
        sessions = sessions.filter(pk__lt=cursor)
    rows = list(sessions[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    queue = queue_statuses(rows)
    return JsonResponse(
        {
            "results": [session_json(s, queue) for s in rows],
            "next_cursor": rows[-1].pk if more else None,
        }
    )


def _create(request: HttpRequest, org: Organization) -> HttpResponse:
    data = inp.json_object(request)
    key = inp.idempotency_key(request)
    inp.only_fields(data, {"issue", "runtime_kinds", "requirement_kinds", "env", "pool"})
    if "issue" not in data:
        raise inp.bad("issue", "This field is required.")
    issue = data["issue"]
    if not isinstance(issue, dict):
        raise inp.bad("issue", "Must be an object with key, and optionally title and url.")
    inp.only_fields(issue, {"key", "title", "url"}, prefix="issue.")
    issue_key = inp.string(
        issue, "key", field="issue.key", required=True, min_length=1, max_length=64
    )
    if not inp.ISSUE_KEY_RE.fullmatch(issue_key or ""):
        raise inp.bad("issue.key", "1 to 64 characters without spaces, e.g. ENG-142.")
    title = inp.string(issue, "title", field="issue.title", max_length=300) or ""
    issue_url = inp.url(inp.string(issue, "url", field="issue.url", max_length=500), "issue.url")
    runtime_kinds = inp.string_list(data, "runtime_kinds", required=True) or []
    requirement_kinds = inp.string_list(data, "requirement_kinds", required=True) or []
    env = inp.env_map(data)
    pool = inp.string(data, "pool", min_length=1, max_length=100, nullable=True)

    replay = bool(key) and Session.objects.filter(org=org, api_idempotency_key=key).exists()
    try:
        session = services.create_session(
            org,
            issue_key=issue_key,
            issue_title=title,
            issue_url=issue_url,
            runtime_kinds=runtime_kinds,
            requirement_kinds=requirement_kinds,
            env=env,
            pool_name=pool,
            actor=None,
            channel=Channel.API,
            idempotency_key=key,
            body_hash=inp.canonical_hash(data),
        )
    except services.SessionRequestError as exc:
        field = ENGINE_FIELDS.get(exc.field or "", exc.field or "body")
        return error(400, str(exc), {field: str(exc)})
    except services.IdempotencyConflict:
        return error(
            409,
            "This Idempotency-Key was already used with a different body.",
            {"Idempotency-Key": "Already used with a different body."},
        )
    session = _session(org, session.pk) or session
    response = JsonResponse(session_json(session), status=200 if replay else 202)
    response["Location"] = reverse("api_session", args=[session.pk])
    if replay:
        response["Idempotent-Replayed"] = "true"
    return response


@api_view("GET")
def session_detail(request: HttpRequest, org: Organization, session_id: int) -> HttpResponse:
    session = _session(org, session_id)
    if session is None:
        return _no_session()
    return JsonResponse(session_json(session))


def _action(action: str) -> ApiView:
    @api_view("POST")
    def view(request: HttpRequest, org: Organization, session_id: int) -> HttpResponse:
        session = _session(org, session_id)
        if session is None:
            return _no_session()
        if action not in services.allowed_actions(session):
            return error(
                409,
                f"Cannot {action} a session that is {session.state}.",
                id=session.pk,
                state=session.state,
                accepted=False,
            )
        accepted = ACTIONS[action](session, None, Channel.API)
        state = Session.objects.filter(pk=session.pk).values_list("state", flat=True).first()
        return JsonResponse(
            {"id": session.pk, "state": state, "accepted": bool(accepted)}, status=202
        )

    view.__name__ = f"session_{action}"
    return view


session_pause = _action("pause")
session_resume = _action("resume")
session_terminate = _action("terminate")


@api_view("POST")
def session_exec(request: HttpRequest, org: Organization, session_id: int) -> HttpResponse:
    session = _session(org, session_id)
    if session is None:
        return _no_session()
    data = inp.json_object(request)
    inp.only_fields(data, {"command", "env", "timeout"})
    command = inp.string(data, "command", required=True, min_length=1, max_length=inp.MAX_COMMAND)
    if not (command or "").strip():
        raise inp.bad("command", "Must not be blank.")
    env = inp.env_map(data) or {}
    timeout = inp.integer(
        data, "timeout", default=inp.DEFAULT_TIMEOUT, minimum=1, maximum=inp.MAX_TIMEOUT
    )
    if "exec" not in services.allowed_actions(session):
        return error(409, f"Cannot run a command in a session that is {session.state}.")
    try:
        run = services.run_command(
            session,
            command=command or "",
            env=env,
            timeout=timeout,
            actor=None,
            channel=Channel.API,
        )
    except services.SessionRequestError as exc:
        field = ENGINE_FIELDS.get(exc.field or "", exc.field or "body")
        return error(400, str(exc), {field: str(exc)})
    response = JsonResponse(run_json(run), status=202)
    response["Location"] = reverse("api_session_exec_run", args=[session.pk, run.pk])
    return response


@api_view("GET")
def session_exec_run(
    request: HttpRequest, org: Organization, session_id: int, run_id: int
) -> HttpResponse:
    session = _session(org, session_id)
    if session is None:
        return _no_session()
    run = (
        CommandRun.objects.filter(session=session, pk=run_id).first()
        if run_id <= inp.MAX_ID
        else None
    )
    if run is None:
        return error(404, "No such command run in this session.")
    return JsonResponse(run_json(run))


@api_view("GET", "POST", "PUT", "PATCH", "DELETE")
def not_found(request: HttpRequest, org: Organization, unknown: str = "") -> HttpResponse:
    return error(404, "No such API route. See /api/v1/openapi.json.")


@csrf_exempt
def openapi(request: HttpRequest) -> HttpResponse:
    """The API's description (public: it holds no data)."""
    if request.method not in ("GET", "HEAD"):
        response = error(405, f"Method {request.method} is not allowed here.")
        response["Allow"] = "GET, HEAD"
        return response
    return JsonResponse(openapi_document(), json_dumps_params={"indent": 1})
