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
- an API token for ``manage.py demo_dispatcher``, printed on the run that creates it only.

The pools, sessions and billing apps build on this one, so they are imported inside the
functions, never at module import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction

from rensei import audit
from rensei.models import ApiToken, AuditEvent, Channel, Credential, Organization

if TYPE_CHECKING:
    from pools.models import CapacityPool

DEMO_ORG_SLUG = "demo"
# Any non-empty key is accepted by the local emulator; this one says what it is.
EMULATOR_KEY = "e2b_demo_local_emulator_key"
TOKEN_NAME = "demo dispatcher"
SEEDED_ACTION = "demo.seeded"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

MAIN_POOL = "demo-e2b"
MAIN_CAP = 6
# demo_dispatcher creates sessions only while fewer than this many are live, so it never
# takes the last slots of demo-e2b: someone trying the product next to it is not queued.
DISPATCHER_MAX_LIVE = MAIN_CAP - 2
BASE_POOL = "demo-base"
POOL_FORMS: dict[str, dict[str, str]] = {
    MAIN_POOL: {
        "name": MAIN_POOL,
        "templateId": "donmai-worker",
        "launchRunnerInline": "on",
        # When the 10-minute timeout ends E2B pauses the sandbox instead of killing it:
        # paused costs $0, and the reconciler shows the session paused on its next pass.
        "timeoutSeconds": "600",
        "onTimeout": "pause",
        "runtime_provides_text": "",
        "order": "0",
        "concurrency_cap": str(MAIN_CAP),
        "enabled": "on",
    },
    BASE_POOL: {
        "name": BASE_POOL,
        "templateId": "base",
        "timeoutSeconds": "3600",
        "onTimeout": "kill",
        "runtime_provides_text": "",
        "order": "1",
        "concurrency_cap": "",
        # disabled: E2B's base template has no donmai binary (the pool page says so)
    },
}

ISSUE_URL = "https://tracker.example.com/browse/{key}"


@dataclass(frozen=True)
class DemoIssue:
    key: str
    title: str
    hours: float  # running hours over the last 30 days
    sessions: int


# A few issues cost most, as in any real month: ENG-149 alone is over a third.
ISSUES: tuple[DemoIssue, ...] = (
    DemoIssue("ENG-149", "Split the payments service out of the monorepo", 140, 10),
    DemoIssue("ENG-117", "Rewrite the search indexer for incremental updates", 70, 7),
    DemoIssue("ENG-158", "Speed up the test suite with pytest-xdist", 45, 6),
    DemoIssue("ENG-136", "Move file uploads to S3 multipart", 30, 5),
    DemoIssue("ENG-131", "Rate-limit the public API per token", 22, 4),
    DemoIssue("ENG-107", "Upgrade to Django 5.2 LTS", 18, 4),
    DemoIssue("ENG-142", "Fix the login page redirect loop", 12, 3),
    DemoIssue("ENG-123", "Invoice dates off by one day in UTC-8", 8, 3),
    DemoIssue("ENG-101", "Flaky checkout test on CI", 6, 3),
    DemoIssue("ENG-112", "CSV export for the audit log", 5, 2),
    DemoIssue("ENG-128", "Dark mode for the dashboard", 4, 2),
    DemoIssue("ENG-153", "Document the webhook retry policy", 1.5, 1),
)

# Sessions the worker provisions in the emulator after `make run` starts it: half of
# demo-e2b's cap, so the dashboard has live sessions and a newcomer still has free slots.
LIVE_SESSIONS: tuple[tuple[str, list[str], list[str]], ...] = (
    ("ENG-149", ["npm"], ["git", "long-running"]),
    ("ENG-158", ["python-pip"], ["git"]),
    ("ENG-142", ["npm"], ["git", "network-egress"]),
)


@dataclass
class Report:
    """What ``build`` did, in sentences for the terminal. Holds the new token's only copy."""

    notes: list[str] = field(default_factory=list)
    token: str = field(default="", repr=False)
    token_prefix: str = ""


def uses_local_emulator(url: str | None = None) -> bool:
    """True when the E2B API URL points at this machine (the emulator), not at E2B."""
    value = settings.E2B_API_URL if url is None else url
    if not value:
        return False
    try:
        host = urlsplit(value).hostname or ""
    except ValueError:
        return False
    return host in LOOPBACK_HOSTS


def is_demo_org(org: Organization | None) -> bool:
    return org is not None and org.slug == DEMO_ORG_SLUG


def build(org: Organization) -> Report:
    """Everything the demo org holds beyond its users. Idempotent; call inside a transaction
    (the live sessions' provision jobs are sent when it commits)."""
    report = Report()
    local = uses_local_emulator()
    _credential(org, local, report)
    pools = {name: _pool(org, name) for name in POOL_FORMS}
    _issues(org)
    _token(org, report)
    if AuditEvent.objects.filter(org=org, action=SEEDED_ACTION).exists():
        report.notes.append("Demo history: already seeded (left as it is).")
        return report
    from rensei.demo_history import build_history

    counts = build_history(org, pools[MAIN_POOL], ISSUES)
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
    from rensei.credentials import environment_secret, remove_credential, set_credential
    from rensei.crypto import decrypt

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
    from pools.config import masked
    from pools.forms import E2BPoolForm
    from pools.models import CapacityPool

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
    from sessions.models import Issue

    for issue in ISSUES:
        Issue.objects.get_or_create(
            org=org,
            key=issue.key,
            defaults={"title": issue.title, "url": ISSUE_URL.format(key=issue.key)},
        )


def _token(org: Organization, report: Report) -> None:
    from rensei.tokens import create_token

    existing = ApiToken.objects.filter(org=org, name=TOKEN_NAME, revoked_at__isnull=True).first()
    if existing is not None:
        report.token_prefix = existing.prefix
        return
    token, plaintext = create_token(org, TOKEN_NAME, actor=None, channel=Channel.CLI)
    report.token, report.token_prefix = plaintext, token.prefix


def _live_sessions(org: Organization) -> int:
    from sessions.models import Issue
    from sessions.services import create_session

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
