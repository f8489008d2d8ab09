"""What the demo organisation holds: its names, pools, issues and caps, as data.

``manage.py seed_demo`` builds it (``billing.demo``: the builder writes every app's rows, so
it sits in the top layer); ``demo_dispatcher`` and the demo notice read these values from
here, the bottom layer, which every app may import.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from rensei.models import Organization

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
