"""The control-plane REST API (``api.e2b.dev``), as the SDKs and the CLI call it.

Status codes, error bodies (``{"code": <int>, "message": ...}``) and messages follow
E2B's control plane; the Python SDK crashes on an error body without both keys.
"""

from __future__ import annotations

import base64
import heapq
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from .metrics import select
from .sandbox import CLIENT_ID, ENVD_VERSION, ApiError, Sandbox
from .state import Emulator

INVALID_API_KEY = (
    "Invalid API key, please visit https://e2b.dev/docs/quickstart/api-key for more information."
)
MAX_PAGE = 100


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    parsed_body: Any = None

    def json(self) -> Any:
        """The JSON body ({} when empty); 400 like E2B when it does not parse."""
        if not self.body.strip():
            return {}
        try:
            self.parsed_body = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, f"Error when parsing request: {exc}") from exc
        if not isinstance(self.parsed_body, dict):
            raise ApiError(400, "Error when parsing request: body must be a JSON object")
        return self.parsed_body

    @property
    def owner(self) -> str:
        """The team asking: its API key (a sandbox belongs to the key that created it)."""
        return self.headers.get("x-api-key", "")

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection instead of answering (fault injection)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"code": status, "message": message}, dict(headers or {}))


# -- JSON shapes (E2B's OpenAPI models) ----------------------------------------------------


def _ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def sandbox_json(sb: Sandbox) -> dict[str, Any]:
    return {
        "templateID": sb.template.template_id,
        "sandboxID": sb.sandbox_id,
        "alias": sb.template.template_id,
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": sb.access_token,
        "trafficAccessToken": None,
        "domain": None,
    }


def listed_json(sb: Sandbox) -> dict[str, Any]:
    return {
        "templateID": sb.template.template_id,
        "alias": sb.template.template_id,
        "sandboxID": sb.sandbox_id,
        "clientID": CLIENT_ID,
        "startedAt": _ts(sb.started_at),
        "endAt": _ts(sb.end_at),
        "cpuCount": sb.template.cpu_count,
        "memoryMB": sb.template.memory_mb,
        "diskSizeMB": sb.template.disk_size_mb,
        "state": sb.state,
        "envdVersion": ENVD_VERSION,
        "metadata": dict(sb.metadata),
    }


def detail_json(sb: Sandbox) -> dict[str, Any]:
    body = listed_json(sb)
    body["envdAccessToken"] = sb.access_token
    body["domain"] = None
    body["lifecycle"] = {
        "onTimeout": "pause" if sb.auto_pause else "kill",
        "autoResume": bool(sb.auto_resume),
    }
    if sb.state == "paused":
        body["pauseMode"] = "full"
    return body


# -- body helpers --------------------------------------------------------------------------


def _str_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError(400, f"Error when parsing request: '{key}' must map strings to strings")
    return value


def _optional_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"Error when parsing request: '{key}' must be a boolean")
    return value


def parse_metadata_filter(raw: str | None) -> dict[str, str]:
    """Undo the SDK's encoding: a query string of individually percent-encoded pairs."""
    if not raw:
        return {}
    return {unquote(k): unquote(v) for k, v in parse_qsl(raw, keep_blank_values=True)}


def _matches(sb: Sandbox, wanted: dict[str, str]) -> bool:
    return wanted.items() <= sb.metadata.items()  # every pair wanted, with its value


# -- handlers ------------------------------------------------------------------------------


def create(em: Emulator, req: Request) -> Response:
    key = req.headers.get("idempotency-key")
    body = req.json()
    if key and (previous := em.remembered(key, req.owner)) is not None:
        return Response(201, previous)
    template_id = body.get("templateID")
    if not isinstance(template_id, str) or not template_id:
        raise ApiError(400, "Error when parsing request: 'templateID' is required")
    auto_resume = body.get("autoResume")
    sandbox = em.create(
        template_id,
        body.get("timeout"),
        _str_map(body, "metadata"),
        _str_map(body, "envVars"),
        auto_pause=bool(_optional_bool(body, "autoPause")),
        auto_resume=auto_resume.get("enabled") if isinstance(auto_resume, dict) else None,
        owner=req.owner,
    )
    answer = sandbox_json(sandbox)
    if key:
        em.remember(key, answer, req.owner)
    return Response(201, answer, drop=em.faults.take_drop_create())


def kill(em: Emulator, req: Request, sandbox_id: str) -> Response:
    em.kill(sandbox_id, req.owner)
    return Response(204)


def pause(em: Emulator, req: Request, sandbox_id: str) -> Response:
    req.json()  # {"memory": ..., "requireHealthyGuest": ...}: accepted, nothing to choose here
    em.pause(sandbox_id, req.owner)
    return Response(204)


def connect(em: Emulator, req: Request, sandbox_id: str) -> Response:
    body = req.json()
    if req.path.startswith("/sandboxes/") and "timeout" not in body:
        raise ApiError(400, "Error when parsing request: 'timeout' is required")
    resumed = em.connect(sandbox_id, body.get("timeout"), req.owner)
    return Response(201 if resumed else 200, sandbox_json(em.get(sandbox_id)))


def resume(em: Emulator, req: Request, sandbox_id: str) -> Response:
    body = req.json()
    em.resume(sandbox_id, body.get("timeout"), _optional_bool(body, "autoPause"), req.owner)
    return Response(201, sandbox_json(em.get(sandbox_id)))


def get(em: Emulator, req: Request, sandbox_id: str) -> Response:
    return Response(200, detail_json(em.get(sandbox_id, req.owner)))


def metrics(em: Emulator, req: Request, sandbox_id: str) -> Response:
    """``GET /sandboxes/{id}/metrics?start=&end=`` (unix seconds): the samples in between."""
    sandbox = em.get(sandbox_id, req.owner)
    start, end = _unix_param(req, "start"), _unix_param(req, "end")
    if start is not None and end is not None and start > end:
        raise ApiError(400, "start must be before end")
    return Response(200, select(list(sandbox.samples), start, end))


def _unix_param(req: Request, name: str) -> int | None:
    raw = req.param(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, f"parameter '{name}' must be a unix timestamp in seconds") from exc
    if value < 0:
        raise ApiError(400, f"parameter '{name}' must not be negative")
    return value


def set_timeout(em: Emulator, req: Request, sandbox_id: str) -> Response:
    body = req.json()
    if "timeout" not in body:
        raise ApiError(400, "Error when parsing request: 'timeout' is required")
    em.set_timeout(sandbox_id, body["timeout"], req.owner)
    return Response(204)


def list_v1(em: Emulator, req: Request) -> Response:
    """Deprecated ``GET /sandboxes``: running sandboxes only, metadata filter, no paging."""
    wanted = parse_metadata_filter(req.param("metadata") or req.param("query"))
    found = [s for s in em.owned_by(req.owner) if s.state == "running" and _matches(s, wanted)]
    found.sort(key=lambda s: (s.started_at, s.sandbox_id))
    return Response(200, [listed_json(s) for s in found])


def list_v2(em: Emulator, req: Request) -> Response:
    states = {s for value in req.query.get("state", []) for s in value.split(",") if s}
    if states - {"running", "paused"}:
        raise ApiError(400, f"Invalid state filter: {', '.join(sorted(states))}")
    wanted = parse_metadata_filter(req.param("metadata"))
    template = req.param("template")
    started_after = _parse_time(req.param("startedAfter"))
    order = req.param("order") or "desc"
    if order not in ("asc", "desc"):
        raise ApiError(400, f"Invalid order '{order}', expected 'asc' or 'desc'")
    try:
        limit = int(req.param("limit") or MAX_PAGE)
    except ValueError as exc:
        raise ApiError(400, "parameter 'limit' must be an integer") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, f"parameter 'limit' must be between 1 and {MAX_PAGE}")

    desc = order == "desc"
    token = req.param("nextToken")
    cursor = _decode_token(token) if token else None
    found = [
        s
        for s in em.owned_by(req.owner)
        if (cursor is None or (_cursor_key(s) < cursor if desc else _cursor_key(s) > cursor))
        and (not states or s.state in states)
        and _matches(s, wanted)
        and (template is None or s.template.template_id == template)
        and (started_after is None or s.started_at > started_after)
    ]
    # The page and whether more follow: the first limit + 1 in order, not a sort of every
    # match on every page (a team of 5,000 sandboxes is listed in 50 pages).
    first = (heapq.nlargest if desc else heapq.nsmallest)(limit + 1, found, key=_cursor_key)
    page = first[:limit]
    headers = {"x-next-token": _encode_token(page[-1])} if len(first) > limit else {}
    return Response(200, [listed_json(s) for s in page], headers)


def _cursor_key(sb: Sandbox) -> tuple[datetime, str]:
    return (sb.started_at, sb.sandbox_id)


def _encode_token(sb: Sandbox) -> str:
    return base64.urlsafe_b64encode(f"{_ts(sb.started_at)}__{sb.sandbox_id}".encode()).decode()


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        started, sandbox_id = base64.urlsafe_b64decode(token.encode()).decode().split("__")
        at = datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(400, "Invalid next token") from exc
    return (at if at.tzinfo else at.replace(tzinfo=UTC), sandbox_id)


def _parse_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(400, f"Invalid startedAfter '{raw}'") from exc


# -- routing -------------------------------------------------------------------------------

Handler = Callable[..., Response]
_ID = r"(?P<sandbox_id>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = [
    ("POST", re.compile(r"/v2/sandboxes"), "create", create),
    ("POST", re.compile(r"/sandboxes"), "create", create),
    ("GET", re.compile(r"/v2/sandboxes"), "list", list_v2),
    ("GET", re.compile(r"/sandboxes"), "list_v1", list_v1),
    ("DELETE", re.compile(rf"/sandboxes/{_ID}"), "kill", kill),
    ("GET", re.compile(rf"/sandboxes/{_ID}"), "get", get),
    ("POST", re.compile(rf"/sandboxes/{_ID}/pause"), "pause", pause),
    ("POST", re.compile(rf"/v2/sandboxes/{_ID}/connect"), "connect", connect),
    ("POST", re.compile(rf"/sandboxes/{_ID}/connect"), "connect", connect),
    ("POST", re.compile(rf"/sandboxes/{_ID}/resume"), "resume", resume),
    ("POST", re.compile(rf"/sandboxes/{_ID}/timeout"), "timeout", set_timeout),
    ("GET", re.compile(rf"/sandboxes/{_ID}/metrics"), "metrics", metrics),
]
# Documented E2B endpoints the platform does not use: answered 501, not 404.
_UNIMPLEMENTED = re.compile(
    r"/(v2/)?sandboxes/[^/]+/(logs|metrics|fork|snapshots|refreshes|network)"
    r"|/sandboxes/metrics|/(v\d/)?(templates|snapshots|volumes|secrets|teams)(/.*)?"
)


def route(method: str, path: str) -> tuple[str, Handler | None, dict[str, str]]:
    """(endpoint name, handler, path params); handler None when nothing matches."""
    path = path.rstrip("/") or "/"
    for route_method, pattern, endpoint, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match and route_method == method:
            return endpoint, handler, match.groupdict()
    return "other", None, {}


def dispatch(em: Emulator, req: Request) -> Response:
    """Authenticate, route and run one control-plane request."""
    _, handler, params = route(req.method, req.path)
    key = req.headers.get("x-api-key", "")
    if not key or (em.api_keys and key not in em.api_keys):
        return error_response(401, INVALID_API_KEY)
    if handler is None:
        if _UNIMPLEMENTED.fullmatch(req.path.rstrip("/")):
            message = f"{req.method} {req.path} is not implemented by the local E2B emulator"
            return error_response(501, message)
        return error_response(404, f"{req.method} {req.path} not found")
    try:
        return handler(em, req, **params)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers)
