"""The API's plumbing under the routes of sessions/api.py: the route guard, the token, and
the parts of the OpenAPI document the schemas cannot carry (headers, links, descriptions).

Every route authenticates with ``Authorization: Bearer <token>`` first, so an unknown route
or method answers 401 to a stranger too (and an expired token 401 "token expired"); then
the method (405), then the token's scope for the operation (403 naming the missing scope,
see ``described(scope=…)``), then unknown query
parameters (400 naming them), then the session in the path (another org's id is a 404,
whatever the body says); then ninja validates the schemas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from django.http import HttpRequest, HttpResponse
from ninja import Router
from ninja.operation import PathView
from ninja.security import HttpBearer
from pydantic import WithJsonSchema

from rensei import audit
from rensei import inputs as inp
from rensei.models import ApiToken, Organization
from rensei.tokens import SCOPES, refusal
from rensei.tokens import authenticate as token_for
from sessions.api_errors import error, unauthorized, unknown_query
from sessions.models import Session

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


class BearerToken(HttpBearer):
    """An org API token. The route guard below has already looked it up."""

    openapi_description = "An org API token."

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        return getattr(request, "api_token", None) or token_for(
            request.headers.get("Authorization", "")
        )

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        return token_for(f"Bearer {token}")


class GuardedPathView(PathView):
    """One API path: the token first, then the method, then the query string's names.

    Ninja itself answers a method it has no operation for with a plain-text 405 before any
    authentication; here a stranger gets the JSON 401 on every method, a token holder a
    JSON 405 with ``Allow``, and a query parameter the operation does not take is a 400.
    """

    public = False

    def get_view(self) -> Callable[..., Any]:
        view = super().get_view()
        methods = tuple(m for m in HTTP_METHODS if any(m in op.methods for op in self.operations))

        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            token = None
            if not self.public:
                token = token_for(request.headers.get("Authorization", ""))
                if token is None:
                    return unauthorized()
                request.api_token = token  # type: ignore[attr-defined]
                expired = refusal(token, "")
                if expired is not None:
                    return error(expired.status, expired.message)
            operation = self._find_operation(request)
            if operation is None:
                response = error(405, f"Method {request.method} is not allowed here.")
                response["Allow"] = ", ".join(methods)
                return response
            if token is not None:
                refused = refusal(token, required_scope(operation))
                if refused is not None:
                    return error(
                        refused.status, refused.message, missing_scope=refused.missing_scope
                    )
            # The public document takes no input at all; it ignores query strings (caches
            # and browsers add their own).
            strays = [] if self.public else sorted(set(request.GET) - query_names(operation))
            if strays:
                return unknown_query(strays, query_names(operation))
            if token is not None and "session_id" in kwargs:
                # Orgs are walls: another org's session is not found, whatever the body says.
                session = find_session(token.org, kwargs["session_id"])
                if session is None:
                    return no_session()
                request.api_session = session  # type: ignore[attr-defined]
            if token is None:
                return view(request, *args, **kwargs)
            with audit.acting_token(token.name):
                return view(request, *args, **kwargs)

        guarded.csrf_exempt = True  # type: ignore[attr-defined]
        guarded.api_methods = methods  # type: ignore[attr-defined]
        return guarded

    def clone(self) -> GuardedPathView:
        cloned = super().clone()
        cloned.__class__ = type(self)
        return cloned  # type: ignore[return-value]


class PublicPathView(GuardedPathView):
    public = True


def required_scope(operation: Any) -> str:
    """The scope an operation needs (``described(scope=…)`` puts it in its document)."""
    return str((operation.openapi_extra or {}).get(SCOPE_KEY, ""))


def query_names(operation: Any) -> set[str]:
    """The query parameters an operation declares (what its document lists)."""
    names: set[str] = set()
    for model in operation.models:
        if model.__ninja_param_source__ == "query":
            names |= set(getattr(model, "__ninja_flatten_map__", None) or model.model_fields)
    return names


class ApiRouter(Router):
    """A router whose paths are guarded (see GuardedPathView)."""

    path_view: type[GuardedPathView] = GuardedPathView

    def add_api_operation(self, path: str, *args: Any, **kwargs: Any) -> None:
        self.path_operations.setdefault(path, self.path_view())
        super().add_api_operation(path, *args, **kwargs)


# --- documentation bits the schemas cannot carry (headers, links, descriptions) ------------

UNAUTHORIZED = {
    "description": "No Authorization header, or the token is unknown, revoked or expired.",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer."}},
}
SCOPE_KEY = "x-required-scope"
UNKNOWN_QUERY = " Query parameters the operation does not list are refused with a 400 naming them."
LOCATION = {"Location": {"schema": {"type": "string"}}}
SESSION_LINKS = {
    name: {"operationId": operation, "parameters": {"session_id": "$response.body#/id"}}
    for name, operation in (
        ("GetSession", "getSession"),
        ("PauseSession", "pauseSession"),
        ("ResumeSession", "resumeSession"),
        ("TerminateSession", "terminateSession"),
        ("ExecInSession", "execInSession"),
    )
}
RUN_LINKS = {
    "GetCommandRun": {
        "operationId": "getCommandRun",
        "parameters": {"session_id": "$request.path.session_id", "run_id": "$response.body#/id"},
    }
}
RESUME_NOTE = (
    " A resume takes a slot under the pool's soft cap: at the cap the session stays "
    "`paused` (accepted=true) with `queue` saying why and where in line, and resumes by "
    "itself when a slot frees."
)


def described(scope: str, **responses: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for an operation: the token scope it needs (enforced by the route
    guard from this very entry), descriptions, headers and links by status."""
    assert scope in SCOPES, scope
    by_status: dict[int, Any] = {
        401: UNAUTHORIZED,
        403: {"description": f"The token lacks the {scope} scope (`missing_scope` names it)."},
    }
    by_status.update({int(status[1:]): detail for status, detail in responses.items()})
    return {SCOPE_KEY: scope, "responses": by_status}


def bad_query(what: str = "") -> dict[str, str]:
    return {"description": (what or "A query parameter is unknown.") + UNKNOWN_QUERY}


def _row_id(description: str) -> Any:
    # Documented from 1 up; a smaller or larger id is simply not found (404), as before.
    return Annotated[
        int,
        WithJsonSchema(
            {"type": "integer", "minimum": 1, "format": "int64", "description": description}
        ),
    ]


if TYPE_CHECKING:
    SessionId = int
    RunId = int
else:
    SessionId = _row_id("The session's id. Another org's id answers 404.")
    RunId = _row_id("A command run's id within this session.")


# --- lookups -------------------------------------------------------------------------------


def org_of(request: HttpRequest) -> Organization:
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    return token.org


def find_session(org: Organization, session_id: int) -> Session | None:
    if session_id > inp.MAX_ID:
        return None
    return Session.objects.select_related("issue", "pool").filter(org=org, pk=session_id).first()


def session_of(request: HttpRequest) -> Session:
    """The path's session, found in the token's org by the route guard."""
    session: Session = request.api_session  # type: ignore[attr-defined]
    return session


def no_session() -> HttpResponse:
    return error(404, "No such session.")
