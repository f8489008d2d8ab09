"""The JSON API's schemas: what it accepts and what it answers, as Pydantic models.

The OpenAPI document is generated from these by django-ninja, so what it publishes is what
is enforced. Input rules come from rensei/inputs.py (the forms and services use the same
types); kinds are checked by pools.kinds, as everywhere else.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from ninja import Schema
from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from pools.kinds import kind_json_schema, kinds_rule
from rensei import inputs as inp
from sessions.admission import UsdAmount
from sessions.models import CommandRunState, SessionState

if TYPE_CHECKING:
    SessionStateName = str
    RunStateName = str
else:  # the enums the document lists, from the models' choices
    SessionStateName = Literal[tuple(SessionState.values)]
    RunStateName = Literal[tuple(CommandRunState.values)]
Action = Literal["pause", "resume", "terminate", "exec"]

MAX_IDEMPOTENCY_KEY = 255
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


def idempotency_key(value: str) -> str:
    if len(value) > MAX_IDEMPOTENCY_KEY or not IDEMPOTENCY_KEY_RE.fullmatch(value):
        raise inp.InputError(
            f"Must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters, without spaces "
            "at either end."
        )
    return value


IdempotencyKey = Annotated[
    str,
    AfterValidator(inp.rule(idempotency_key)),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IDEMPOTENCY_KEY,
            "pattern": f"^{IDEMPOTENCY_KEY_RE.pattern}$",
        }
    ),
]
MAX_LIST_LIMIT = 100


class Input(Schema):
    """Request schemas: strict JSON types, unknown fields refused (``additionalProperties:
    false`` in the document; the message lists the fields there are)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    expected = ", ".join(sorted(cls.model_fields))
                    raise PydanticCustomError(
                        "rensei_rule",
                        f"Unknown field. Expected one of: {expected}.",
                        {"key": str(key)[:100]},
                    )
        return data


IssueFilter = inp.Text(inp.MAX_ISSUE_KEY, description="An issue key (exact).")
PoolName = inp.Text(100, 1, description="Run in this pool (by name) instead of routing.")
Kinds = Annotated[
    inp.KindList,
    Field(json_schema_extra=kind_json_schema),
    AfterValidator(kinds_rule),
]


# --- input ---------------------------------------------------------------------------------


class IssueInput(Input):
    key: inp.IssueKey
    title: inp.IssueTitle = ""
    url: inp.IssueUrl = ""
    budget_usd: UsdAmount | None = Field(
        None,
        description='The issue\'s own budget in USD (a string like `"25.00"` or a number): '
        "sets or changes it; without it the org's default per-issue budget applies.",
    )


class SessionCreate(Input):
    issue: IssueInput
    runtime_kinds: Kinds
    requirement_kinds: Kinds
    env: inp.EnvMap | None = None
    pool: PoolName | None = None  # type: ignore[valid-type]


class ExecRequest(Input):
    command: inp.Command
    env: inp.EnvMap | None = None
    timeout: inp.ExecTimeout | None = Field(default=inp.DEFAULT_EXEC_TIMEOUT)


def _absent_not_null(schema: dict[str, Any]) -> None:
    """A query parameter is absent or has a value: it is never null (the document says so)."""
    variants = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
    if len(variants) == 1:
        schema.update(variants[0])
    if schema.get("default", 0) is None:
        del schema["default"]


class SessionFilters(Schema):
    """The list's query string. An empty value is the same as none."""

    state: SessionStateName | None = Field(None, json_schema_extra=_absent_not_null)
    issue: IssueFilter | None = Field(None, json_schema_extra=_absent_not_null)  # type: ignore[valid-type]
    limit: int = Field(25, ge=1, le=MAX_LIST_LIMIT)
    cursor: int | None = Field(
        None,
        ge=1,
        le=inp.MAX_ID,
        description="`next_cursor` from the previous page.",
        json_schema_extra=_absent_not_null,
    )


# --- output --------------------------------------------------------------------------------


class Error(Schema):
    error: str = Field(description="What went wrong, in words.")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Each field at fault (dotted for nested ones) → message.",
    )


class Issue(Schema):
    key: str
    title: str
    url: str


class QueueStatus(Schema):
    """Why a session waits and its place in line; null when it does not wait. A session
    waits when it is queued (every pool that could run it is at its soft cap) or paused with
    a resume requested at its pool's cap (it stays paused and resumes by itself). A freed
    slot is offered to waiting sessions and resumes oldest request first. Paused and queued
    sessions hold no slot."""

    kind: Literal["start", "resume"] = Field(
        description="start: queued for its first sandbox; resume: paused, resume requested."
    )
    reason: str = Field(description="E.g. `demo-e2b is at its cap (4/4)`.")
    position: int = Field(
        ge=1,
        description="1: the next freed slot is offered to this session first. Counts the "
        "waiting requests ahead that may use the same pools.",
    )
    waiting_for: list[str] = Field(description="The pools it waits for.")
    since: datetime = Field(description="When it got in line (UTC).")
    text: str = Field(description="For people: `demo-e2b is at its cap (4/4); 2nd in line`.")


class Session(Schema):
    id: int
    state: SessionStateName
    issue: Issue | None
    pool: str | None = Field(description="The pool it runs in.")
    requested_pool: str | None
    provider: str
    runtime_kinds: list[str]
    requirement_kinds: list[str]
    env_names: list[str]
    sandbox_id: str | None
    template: str | None
    vcpu: int | None
    memory_mb: int | None
    attempts: int
    last_error: str
    routing: dict[str, Any] = Field(
        description="The routing decision: the chosen pool and why each other pool was skipped."
    )
    queue: QueueStatus | None
    request_id: UUID = Field(description="Also written into the sandbox's metadata.")
    allowed_actions: list[Action] = Field(description="What the session's state allows now.")
    cost_so_far: str | None = Field(
        description="USD, exact (a decimal string): its ledger rows plus the open running "
        "interval priced as if it closed now. Null when cost is not priced here."
    )
    created_at: datetime
    state_changed_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class BudgetState(Schema):
    id: int
    scope: Literal["org", "pool", "issue"]
    pool: str | None
    issue: str | None
    period: str = Field(description="`2026-12` (UTC month) or `issue-<id>` (an issue's life).")
    amount_usd: str
    consumed_usd: str = Field(description="When the block started.")
    enforcement: Literal["notify", "block", "pause"]
    state: str


class BudgetRefusal(Schema):
    error: str = Field(description="Which budget refuses new sessions, and how to lift it.")
    fields: dict[str, str] = Field(description="`budget` → the same message.")
    budget: BudgetState


class SessionList(Schema):
    results: list[Session]
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next page; null on the last."
    )


class ActionResult(Schema):
    id: int
    state: SessionStateName
    accepted: bool = Field(
        description="False when another request changed the state first; nothing was done."
    )


class ActionConflict(Schema):
    error: str
    id: int
    state: SessionStateName
    accepted: Literal[False]


class CommandRun(Schema):
    id: int
    session: int
    command: str
    env_names: list[str]
    timeout: int
    state: RunStateName
    exit_code: int | None = Field(description="Null until the command has finished.")
    stdout: str = Field(
        description="What the command printed: so far while it runs (updated about twice a "
        "second), all of it once it has finished. Past 64 KB: the first and the last 32 KB "
        "with '… N bytes omitted …' between."
    )
    stderr: str = Field(description="As stdout.")
    stdout_truncated: bool = Field(description="True when stdout was capped.")
    stderr_truncated: bool
    error: str = Field(description="Why the command could not run (empty when it ran).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
