"""The demo organisation's contents, built through the functions the pages and the API use.

``seed_demo`` calls ``build(org)``; every step finds what an earlier run made and leaves it
alone, so running it again changes nothing:

- the org's E2B credential: the local emulator's key (any non-empty key works there), added
  only when the org has none, and taken away again when the server talks to real E2B;
- two pools through the pool form: ``demo-e2b`` (the emulator's ``donmai-worker`` template,
  runner launched inline, a cap of 6) and ``demo-base`` (E2B's bare ``base`` template,
  disabled: the page shows why a pool without donmai is useless);
- a dozen issues, 30 days of backdated sessions with their ledger rows (``demo_history``),
  and three live sessions created ``queued`` through ``create_session``: the worker
  provisions them in the emulator once it runs. They take three of the six slots, so a
  newcomer's first session runs at once (``demo_dispatcher`` stays below the cap too);
- an API token for ``manage.py demo_dispatcher``, printed on the run that creates it only;
- with the emulator, a job that tests the key, checks the pools and reconciles yesterday once
  it answers, while any of them was never done (``demo_checks``).

It writes the rows of every app, so it lives in billing, the top layer (see the README's
Layout section); the demo org's contents as data are ``rensei.demo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from django.core.management.base import CommandError
from django.db import transaction

from billing import demo_checks
from billing.demo_history import build_history
from events.demo import ensure_demo_endpoint
from pools.config import masked
from pools.forms import E2BPoolForm
from pools.models import CapacityPool
from rensei import audit
from rensei.credentials import environment_secret, remove_credential, set_credential
from rensei.crypto import decrypt
from rensei.demo import (
    EMULATOR_KEY,
    ISSUE_URL,
    ISSUES,
    LIVE_SESSIONS,
    MAIN_POOL,
    POOL_FORMS,
    SEEDED_ACTION,
    TOKEN_NAME,
    uses_local_emulator,
)
from rensei.models import ApiToken, AuditEvent, Channel, Credential, Organization
from rensei.tokens import SCOPES, create_token
from sessions.models import Issue
from sessions.services import create_session


@dataclass
class Report:
    """What ``build`` did, in sentences for the terminal. Holds the new token's only copy."""

    notes: list[str] = field(default_factory=list)
    token: str = field(default="", repr=False)
    token_prefix: str = ""


def build(org: Organization) -> Report:
    """Everything the demo org holds beyond its users. Idempotent; call inside a transaction
    (the live sessions' provision jobs are sent when it commits)."""
    report = Report()
    local = uses_local_emulator()
    _credential(org, local, report)
    pools = {name: _pool(org, name) for name in POOL_FORMS}
    _issues(org)
    _token(org, report)
    if local and demo_checks.due(org):
        # Sent on commit; the worker runs it once the emulator answers.
        cast(Any, demo_checks.first_checks).delay_on_commit(org.pk)
        report.notes.append(
            "E2B: the worker tests the key, checks the pools and reconciles yesterday once "
            "the emulator is up."
        )
    if AuditEvent.objects.filter(org=org, action=SEEDED_ACTION).exists():
        report.notes.append("Demo history: already seeded (left as it is).")
        return report
    counts = build_history(org, pools[MAIN_POOL], ISSUES)
    ensure_demo_endpoint(org)  # after the history: the demo receiver gets what happens next
    live = _live_sessions(org) if local else 0
    audit.record(
        org=org,
        action=SEEDED_ACTION,
        target="demo history",
        channel=Channel.CLI,
        detail={**counts, "live_sessions": live},
    )
    report.notes.append(
        f"Demo history: {counts['sessions']} past sessions, {counts['cost_events']} ledger "
        f"rows over 30 days."
    )
    if local:
        report.notes.append(
            f"Live sessions: {live} queued; the worker starts them in the local E2B emulator."
        )
    else:
        report.notes.append(
            "Live sessions: none started, because E2B_API_URL does not point at the local "
            "emulator (demo sessions would create real, billed E2B sandboxes)."
        )
    return report


# --- steps -----------------------------------------------------------------------------------


def _credential(org: Organization, local: bool, report: Report) -> None:
    row = Credential.objects.filter(org=org, provider="e2b").first()
    if local:
        if row is None:
            set_credential(org, "e2b", EMULATOR_KEY, actor=None, channel=Channel.CLI)
            report.notes.append("E2B: added the local emulator's key to the demo org.")
        return
    # Real E2B: the emulator's key would win over E2B_API_KEY and fail every call.
    if row is not None and decrypt(row.secret_encrypted) == EMULATOR_KEY:
        remove_credential(org, "e2b", actor=None, channel=Channel.CLI)
        row = None
        report.notes.append("E2B: removed the local emulator's key (this server uses real E2B).")
    if row is None and not environment_secret("e2b"):
        report.notes.append(
            "E2B: no key yet. Add yours in Settings → Integrations, or set E2B_API_KEY."
        )


def _pool(org: Organization, name: str) -> CapacityPool:
    """The named pool; created through the same form and audit as New pool → E2B."""
    existing = CapacityPool.objects.filter(org=org, name=name).first()
    if existing is not None:
        return existing
    form = E2BPoolForm(POOL_FORMS[name], org=org)
    if not form.is_valid():
        raise CommandError(f"The demo pool {name} does not validate: {form.errors.as_text()}")
    with transaction.atomic():
        pool = form.save()
        detail: dict[str, Any] = {
            "provider": pool.provider,
            "config": masked(pool.config),
            "order": pool.order,
            "concurrency_cap": pool.concurrency_cap,
            "enabled": pool.enabled,
        }
        audit.record(
            org=org, action="pool.created", target=str(pool), channel=Channel.CLI, detail=detail
        )
    return pool


def _issues(org: Organization) -> None:
    for issue in ISSUES:
        Issue.objects.get_or_create(
            org=org,
            key=issue.key,
            defaults={"title": issue.title, "url": ISSUE_URL.format(key=issue.key)},
        )


def _token(org: Organization, report: Report) -> None:
    existing = ApiToken.objects.filter(org=org, name=TOKEN_NAME, revoked_at__isnull=True).first()
    if existing is not None:
        report.token_prefix = existing.prefix
        return
    # The demo dispatcher reads, acts on and runs commands in sessions: every scope.
    token, plaintext = create_token(org, TOKEN_NAME, actor=None, channel=Channel.CLI, scopes=SCOPES)
    report.token, report.token_prefix = plaintext, token.prefix


def _live_sessions(org: Organization) -> int:
    titles = dict(Issue.objects.filter(org=org).values_list("key", "title"))
    for key, runtime, requirement in LIVE_SESSIONS:
        create_session(
            org,
            issue_key=key,
            issue_title=titles.get(key, ""),
            runtime_kinds=runtime,
            requirement_kinds=requirement,
            env={"DONMAI_ISSUE": key},
            actor=None,
            channel=Channel.CLI,
        )
    return len(LIVE_SESSIONS)
