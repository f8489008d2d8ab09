"""The OpenAPI 3.1 description of the JSON API, served at /api/v1/openapi.json.

Written by hand next to the code it describes: the limits come from ``sessions.api_input``
so the published rules and the enforced rules cannot drift apart, and a test walks the
URLconf to check that every API route and method appears here.
"""

from __future__ import annotations

from typing import Any

from sessions import api_input as inp
from sessions.forms import kind_lists
from sessions.models import CommandRunState, SessionState

JSON = "application/json"
ACTIONS = ("pause", "resume", "terminate")
# PostgreSQL cannot store NUL; the API refuses it in every string.
NO_NUL = "^[^\\u0000]*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(max_length: int, min_length: int = 0, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, "pattern": NO_NUL}
    if min_length:
        schema["minLength"] = min_length
    return {**schema, **extra}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _known_kinds() -> list[str]:
    runtime, requirement = kind_lists()
    return sorted({*runtime, *requirement})


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


UNAUTHORIZED = {
    "description": "No Authorization header, or the token is unknown or revoked.",
    "headers": {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Always `Bearer`."}
    },
    "content": {JSON: {"schema": _ref("Error")}},
}
SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "The session's id. Another org's id answers 404.",
    "schema": {"type": "integer", "minimum": 1, "format": "int64"},
}
RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "description": "A command run's id within this session.",
    "schema": {"type": "integer", "minimum": 1, "format": "int64"},
}


def _schemas() -> dict[str, Any]:
    kind = {
        "anyOf": [
            {"type": "string", "enum": _known_kinds()},
            {"type": "string", "pattern": "^toolchain:[a-z0-9][a-z0-9._+-]{0,39}$"},
        ]
    }
    env = {
        "type": "object",
        "description": "Environment variables (NAME: value). Values are never returned.",
        "maxProperties": inp.MAX_ENV_VARS,
        "propertyNames": {"pattern": f"^{inp.ENV_NAME_RE.pattern}$"},
        "additionalProperties": _text(inp.MAX_ENV_VALUE),
    }
    timestamp = {"type": "string", "format": "date-time", "description": "UTC."}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What went wrong, in words."},
                "fields": {
                    "type": "object",
                    "description": "Each field at fault (dotted for nested ones) → message.",
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "IssueInput": {
            "type": "object",
            "additionalProperties": False,
            "required": ["key"],
            "properties": {
                "key": _text(
                    64,
                    1,
                    pattern=f"^{inp.ISSUE_KEY_RE.pattern}$",
                    description="The issue key, e.g. ENG-142: no spaces.",
                ),
                "title": _text(300),
                "url": _text(
                    500,
                    format="uri",
                    pattern=f"^{inp.URL_RE.pattern}$",
                    description="An http(s) URL.",
                ),
            },
        },
        "SessionCreate": {
            "type": "object",
            "additionalProperties": False,
            "required": ["issue", "runtime_kinds", "requirement_kinds"],
            "properties": {
                "issue": _ref("IssueInput"),
                "runtime_kinds": {"type": "array", "maxItems": inp.MAX_KINDS, "items": kind},
                "requirement_kinds": {
                    "type": "array",
                    "maxItems": inp.MAX_KINDS,
                    "items": kind,
                },
                "env": _nullable(env),
                "pool": _nullable(
                    _text(100, 1, description="Run in this pool (by name) instead of routing.")
                ),
            },
        },
        "Issue": {
            "type": "object",
            "required": ["key", "title", "url"],
            "properties": {
                "key": {"type": "string"},
                "title": {"type": "string"},
                "url": {"type": "string"},
            },
        },
        "Session": {
            "type": "object",
            "required": [
                "id",
                "state",
                "issue",
                "pool",
                "requested_pool",
                "provider",
                "runtime_kinds",
                "requirement_kinds",
                "env_names",
                "sandbox_id",
                "template",
                "vcpu",
                "memory_mb",
                "attempts",
                "last_error",
                "routing",
                "queue",
                "request_id",
                "allowed_actions",
                "created_at",
                "state_changed_at",
                "started_at",
                "ended_at",
            ],
            "properties": {
                "id": {"type": "integer"},
                "state": {"type": "string", "enum": list(SessionState.values)},
                "issue": _nullable(_ref("Issue")),
                "pool": {"type": ["string", "null"], "description": "The pool it runs in."},
                "requested_pool": {"type": ["string", "null"]},
                "provider": {"type": "string"},
                "runtime_kinds": {"type": "array", "items": {"type": "string"}},
                "requirement_kinds": {"type": "array", "items": {"type": "string"}},
                "env_names": {"type": "array", "items": {"type": "string"}},
                "sandbox_id": {"type": ["string", "null"]},
                "template": {"type": ["string", "null"]},
                "vcpu": {"type": ["integer", "null"]},
                "memory_mb": {"type": ["integer", "null"]},
                "attempts": {"type": "integer"},
                "last_error": {"type": "string"},
                "routing": {
                    "type": "object",
                    "description": "The routing decision: the chosen pool and why each "
                    "other pool was skipped.",
                },
                "queue": _nullable(_ref("QueueStatus")),
                "request_id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "Also written into the sandbox's metadata.",
                },
                "allowed_actions": {
                    "type": "array",
                    "items": {"type": "string", "enum": [*ACTIONS, "exec"]},
                    "description": "What the session's state allows now.",
                },
                "created_at": timestamp,
                "state_changed_at": timestamp,
                "started_at": _nullable(timestamp),
                "ended_at": _nullable(timestamp),
            },
        },
        "QueueStatus": {
            "type": "object",
            "description": "Why a session waits and its place in line; null when it does "
            "not wait. A session waits when it is queued (every pool that could run it is "
            "at its soft cap) or paused with a resume requested at its pool's cap (it "
            "stays paused and resumes by itself). A freed slot is offered to waiting "
            "sessions and resumes oldest request first. Paused and queued sessions hold "
            "no slot.",
            "required": ["kind", "reason", "position", "waiting_for", "since", "text"],
            "properties": {
                "kind": {
                    "type": "string",
                    "enum": ["start", "resume"],
                    "description": "start: queued for its first sandbox; resume: paused, "
                    "resume requested.",
                },
                "reason": {
                    "type": "string",
                    "description": "E.g. `demo-e2b is at its cap (4/4)`.",
                },
                "position": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "1: the next freed slot is offered to this session "
                    "first. Counts the waiting requests ahead that may use the same pools.",
                },
                "waiting_for": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The pools it waits for.",
                },
                "since": {**timestamp, "description": "When it got in line (UTC)."},
                "text": {
                    "type": "string",
                    "description": "For people: `demo-e2b is at its cap (4/4); 2nd in line`.",
                },
            },
        },
        "SessionList": {
            "type": "object",
            "required": ["results", "next_cursor"],
            "properties": {
                "results": {"type": "array", "items": _ref("Session")},
                "next_cursor": {
                    "type": ["integer", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last.",
                },
            },
        },
        "ActionResult": {
            "type": "object",
            "required": ["id", "state", "accepted"],
            "properties": {
                "id": {"type": "integer"},
                "state": {"type": "string", "enum": list(SessionState.values)},
                "accepted": {
                    "type": "boolean",
                    "description": "False when another request changed the state first; "
                    "nothing was done.",
                },
            },
        },
        "ActionConflict": {
            "type": "object",
            "required": ["error", "id", "state", "accepted"],
            "properties": {
                "error": {"type": "string"},
                "id": {"type": "integer"},
                "state": {"type": "string", "enum": list(SessionState.values)},
                "accepted": {"type": "boolean", "const": False},
            },
        },
        "ExecRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["command"],
            "properties": {
                "command": {
                    **_text(inp.MAX_COMMAND, 1),
                    "allOf": [{"pattern": "\\S"}],
                    "description": "Run through /bin/bash: pipes, && and nohup work.",
                },
                "env": _nullable(env),
                "timeout": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": inp.MAX_TIMEOUT,
                    "default": inp.DEFAULT_TIMEOUT,
                    "description": "Seconds (default 600, ten minutes).",
                },
            },
        },
        "CommandRun": {
            "type": "object",
            "required": [
                "id",
                "session",
                "command",
                "env_names",
                "timeout",
                "state",
                "exit_code",
                "stdout",
                "stderr",
                "stdout_truncated",
                "stderr_truncated",
                "error",
                "created_at",
                "started_at",
                "finished_at",
            ],
            "properties": {
                "id": {"type": "integer"},
                "session": {"type": "integer"},
                "command": {"type": "string"},
                "env_names": {"type": "array", "items": {"type": "string"}},
                "timeout": {"type": "integer"},
                "state": {"type": "string", "enum": list(CommandRunState.values)},
                "exit_code": {
                    "type": ["integer", "null"],
                    "description": "Null until the command has finished.",
                },
                "stdout": {
                    "type": "string",
                    "description": "What the command printed: so far while it runs (updated "
                    "about twice a second), all of it once it has finished. Past 64 KB: the "
                    "first and the last 32 KB with '… N bytes omitted …' between.",
                },
                "stderr": {"type": "string", "description": "As stdout."},
                "stdout_truncated": {
                    "type": "boolean",
                    "description": "True when stdout was capped.",
                },
                "stderr_truncated": {"type": "boolean"},
                "error": {
                    "type": "string",
                    "description": "Why the command could not run (empty when it ran).",
                },
                "created_at": timestamp,
                "started_at": _nullable(timestamp),
                "finished_at": _nullable(timestamp),
            },
        },
    }


RESUME_NOTE = (
    " A resume takes a slot under the pool's soft cap: at the cap the session stays "
    "`paused` (accepted=true) with `queue` saying why and where in line, and resumes by "
    "itself when a slot frees."
)


def _action_operation(action: str) -> dict[str, Any]:
    return {
        "operationId": f"{action}Session",
        "summary": f"{action.capitalize()} a session",
        "description": "Accepted actions run in the background; poll the session's state."
        + (RESUME_NOTE if action == "resume" else ""),
        "tags": ["sessions"],
        "parameters": [SESSION_ID],
        "responses": {
            "202": {
                "description": "Accepted (or, with accepted=false, overtaken by another request).",
                "content": {JSON: {"schema": _ref("ActionResult")}},
            },
            "401": UNAUTHORIZED,
            "404": _error("No such session in the token's org."),
            "409": {
                "description": "The session's state does not allow this action.",
                "content": {JSON: {"schema": _ref("ActionConflict")}},
            },
        },
    }


# What a client can do next with the id a response gives it (OpenAPI links).
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


def _paths() -> dict[str, Any]:
    session_response = {"content": {JSON: {"schema": _ref("Session")}}, "links": SESSION_LINKS}
    paths: dict[str, Any] = {
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/v1/sessions": {
            "get": {
                "operationId": "listSessions",
                "summary": "List sessions, newest first",
                "tags": ["sessions"],
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(SessionState.values)},
                    },
                    {
                        "name": "issue",
                        "in": "query",
                        "description": "An issue key (exact).",
                        "schema": _text(64),
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "`next_cursor` from the previous page.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": inp.MAX_ID},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "A page of sessions.",
                        "content": {JSON: {"schema": _ref("SessionList")}},
                    },
                    "400": _error("A query parameter is invalid (named in `fields`)."),
                    "401": UNAUTHORIZED,
                },
            },
            "post": {
                "operationId": "createSession",
                "summary": "Create a session",
                "description": "Queues a session and routes it to a pool. With an "
                "Idempotency-Key, repeating the same body returns the same session (200); "
                "a different body under the same key is a 409.",
                "tags": ["sessions"],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": inp.MAX_IDEMPOTENCY_KEY,
                            "pattern": f"^{inp.IDEMPOTENCY_KEY_RE.pattern}$",
                        },
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("SessionCreate")}},
                },
                "responses": {
                    "202": {
                        "description": "Created and queued.",
                        "headers": {
                            "Location": {"schema": {"type": "string"}},
                        },
                        **session_response,
                    },
                    "200": {
                        "description": "A repeat of an earlier request with the same "
                        "Idempotency-Key and body: the same session.",
                        "headers": {
                            "Idempotent-Replayed": {"schema": {"type": "string", "const": "true"}},
                            "Location": {"schema": {"type": "string"}},
                        },
                        **session_response,
                    },
                    "400": _error(
                        "The body is not a JSON object, or a field is missing, of the wrong "
                        "type, or refused (unknown kind or pool); `fields` names it."
                    ),
                    "401": UNAUTHORIZED,
                    "409": _error("The Idempotency-Key was used with a different body."),
                },
            },
        },
        "/api/v1/sessions/{session_id}": {
            "get": {
                "operationId": "getSession",
                "summary": "Read a session",
                "tags": ["sessions"],
                "parameters": [SESSION_ID],
                "responses": {
                    "200": {"description": "The session.", **session_response},
                    "401": UNAUTHORIZED,
                    "404": _error("No such session in the token's org."),
                },
            }
        },
        "/api/v1/sessions/{session_id}/exec": {
            "post": {
                "operationId": "execInSession",
                "summary": "Run a one-shot command in the session's sandbox",
                "description": "Starts the command in the background; poll the run.",
                "tags": ["exec"],
                "parameters": [SESSION_ID],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("ExecRequest")}},
                },
                "responses": {
                    "202": {
                        "description": "Started.",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {JSON: {"schema": _ref("CommandRun")}},
                        "links": RUN_LINKS,
                    },
                    "400": _error("The body is invalid; `fields` names the field."),
                    "401": UNAUTHORIZED,
                    "404": _error("No such session in the token's org."),
                    "409": _error("The session's state does not allow running a command."),
                },
            }
        },
        "/api/v1/sessions/{session_id}/exec/{run_id}": {
            "get": {
                "operationId": "getCommandRun",
                "summary": "Read a command run: state, exit code and (capped) output",
                "tags": ["exec"],
                "parameters": [SESSION_ID, RUN_ID],
                "responses": {
                    "200": {
                        "description": "The run.",
                        "content": {JSON: {"schema": _ref("CommandRun")}},
                    },
                    "401": UNAUTHORIZED,
                    "404": _error("No such session or run in the token's org."),
                },
            }
        },
    }
    for action in ACTIONS:
        paths[f"/api/v1/sessions/{{session_id}}/{action}"] = {"post": _action_operation(action)}
    return paths


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Rensei sessions API",
            "version": "1.0.0",
            "description": "Create and drive agent sessions with an org API token "
            "(`Authorization: Bearer <token>`, from Settings → API tokens). Errors are JSON "
            '`{"error": "...", "fields": {"field": "message"}}`. Times are UTC.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "sessions", "description": "Sessions and their lifecycle."},
            {"name": "exec", "description": "One-shot commands in a session's sandbox."},
            {"name": "meta", "description": "About the API."},
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An org API token.",
                }
            },
            "schemas": _schemas(),
        },
    }
