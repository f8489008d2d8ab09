"""What budgets say about new and waiting sessions, handed down by the budgets app.

Budgets sit above sessions (they read the ledger, which sits above sessions too), so sessions
never import them. ``BudgetsConfig.ready`` calls ``connect`` once at start-up with the
functions below; the create path, dispatch and the queue reason call them through here.
Without budgets (never in this project, but the seam stays honest) nothing is blocked.

    blocks(org_id, issue_id) -> Blocks      # one query: the org's budgets that block now
    set_issue_budget(issue, amount, actor, channel)   # the dispatcher's ``issue.budget_usd``
    refused(block, issue_key, channel)                # a create a block refused

The USD amount rule lives here too, so the API schema (sessions/schemas.py) and the budget
forms (budgets/forms.py) refuse the same input with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import PlainValidator, WithJsonSchema

from rensei.inputs import InputError, rule

if TYPE_CHECKING:
    from sessions.models import Issue

MAX_USD = Decimal(1_000_000_000)
# Above 0, at most 1e9, at most two decimals, no leading zeros, no sign, no exponent: the
# pattern the OpenAPI document publishes is the whole rule.
USD_PATTERN = r"([1-9]\d{0,8}(\.\d{1,2})?|1000000000(\.0{1,2})?|0?\.(0[1-9]|[1-9]\d?))"
USD_RE = re.compile(USD_PATTERN)
USD_HELP = "USD as a decimal string: above 0, at most 1000000000, at most 2 decimals (e.g. 250.00)."


def usd_amount(value: Any) -> Decimal:
    """A positive USD amount, as a decimal string: above 0, at most 1e9, whole cents.

    Strings only (Decimal as a string, as the API answers money): a JSON number would pass
    through a float first.
    """
    if isinstance(value, Decimal):
        value = str(value)
    if not isinstance(value, str):
        raise InputError('Must be a decimal string of US dollars, e.g. "250.00".')
    text = value
    if USD_RE.fullmatch(text):
        return Decimal(text).quantize(Decimal("0.01"))
    try:
        amount = Decimal(text)
    except (InvalidOperation, ValueError):
        raise InputError("Must be a number of US dollars, e.g. 250.00.") from None
    if not amount.is_finite() or "e" in text.lower() or text.startswith(("+", "-0", "00")):
        raise InputError("Must be a plain number of US dollars, e.g. 250.00.")
    if amount <= 0:
        raise InputError("Must be more than $0.")
    if amount > MAX_USD:
        raise InputError("Must be at most $1,000,000,000.")
    if amount != amount.quantize(Decimal("0.01")) or ("." in text and len(text.split(".")[1]) > 2):
        raise InputError("At most 2 decimal places (whole cents).")
    raise InputError("Must be a plain number of US dollars, e.g. 250.00.")


UsdAmount = Annotated[
    Decimal,
    PlainValidator(rule(usd_amount)),
    WithJsonSchema({"type": "string", "pattern": f"^{USD_PATTERN}$", "description": USD_HELP}),
]


@dataclass(frozen=True)
class Block:
    """A budget that refuses new sessions in its scope now."""

    reason: str  # "The org's monthly budget is reached: $512.30 of $500.00 (2026-12, UTC)."
    budget: dict[str, Any]  # its state for the API: id, scope, amount, consumed, period…


@dataclass(frozen=True)
class Blocks:
    scope: Block | None = None  # the org's or the issue's budget: no session may start
    pools: dict[int, Block] = field(default_factory=dict)  # pool id → its budget's block


class BudgetBlocked(Exception):
    def __init__(self, block: Block) -> None:
        super().__init__(block.reason)
        self.block = block


@dataclass(frozen=True)
class AdmissionHooks:
    blocks: Callable[[int, int | None], Blocks]
    set_issue_budget: Callable[[Issue, Decimal, Any, str], None]
    refused: Callable[[Block, str, str], None]  # block, issue key, channel: after rollback


_hooks: AdmissionHooks | None = None


def connect(hooks: AdmissionHooks) -> None:
    global _hooks
    _hooks = hooks


def blocks(org_id: int, issue_id: int | None = None) -> Blocks:
    return _hooks.blocks(org_id, issue_id) if _hooks else Blocks()


def refused(block: Block, issue_key: str, channel: str) -> None:
    """A create the block refused (its transaction rolled back): the budget's page lists it."""
    if _hooks:
        _hooks.refused(block, issue_key, channel)


def set_issue_budget(issue: Issue, amount: Decimal, actor: Any, channel: str) -> None:
    if _hooks:
        _hooks.set_issue_budget(issue, amount, actor, channel)
