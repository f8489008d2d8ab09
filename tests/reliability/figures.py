"""Figures the reliability suite publishes: one JSON file per scenario.

A test asks for the ``figure`` fixture (``figure("kill_points")``), fills in how many cases it
tried and any numbers worth showing, and asserts as usual. When the test ends, the fixture
writes ``artifacts/reliability/<id>.json`` with the outcome (pass or FAIL), so the table in
docs/reliability.md always says what the last run of that test saw. ``report.py`` renders
the table from these files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

FIGURES_DIR = Path(settings.BASE_DIR) / "artifacts" / "reliability"

# id → (scenario, what must hold). The order here is the order of the published table.
SCENARIOS: dict[str, tuple[str, str]] = {
    "embedded_broker": (
        "Embedded filesystem broker: 8 producer processes and a consumer draining like a "
        "worker, 8,000 messages (rensei.broker against kombu's stock transport)",
        "rensei.broker: 0 bad reads (a worker would die on each), 0 lost, 0 duplicated; "
        "the stock transport's count is recorded",
    ),
    "embedded_broker_two_consumers": (
        "Embedded filesystem broker: 4 producer processes and 2 consumers on one queue, "
        "4,000 messages",
        "every message delivered exactly once; 0 bad reads",
    ),
    "webhook_faults": (
        "Webhook delivery: the delivery worker (a real Celery worker draining the outbox) "
        "SIGKILLed 50 times at random moments; the loopback receiver answers 500 (25 %) or "
        "hangs past the 1 s timeout (7 %) at random",
        "every event delivered at least once, 0 lost; after dedupe by id each processed "
        "once, and each session's events arrive in sequence order; every body signed",
    ),
    "kill_points": (
        "Worker SIGKILLed at random moments while sessions provision, pause, resume and "
        "terminate (real worker, broker, database, emulator)",
        "after a restart and one reconcile: 0 leaked sandboxes, 0 sessions with two "
        "sandboxes, 0 duplicate and 0 missing cost events (ledger seconds = closed intervals)",
    ),
    "worker_kill_defaults": (
        "A whole worker (main process and pool children) SIGKILLed while E2B is slow, with "
        "the production defaults (an hour's visibility timeout, no reconcile pass)",
        "every in-flight provision, pause, terminate and command settled within 60 s of a "
        "worker being back, in its intended state; 0 leaks, 0 doubles, 0 ledger problems",
    ),
    "outage_redis": (
        "Redis (the broker) restarted mid-storm, without persistence: every queued and "
        "unacknowledged message lost (real workers with the production defaults, emulator)",
        "pages and the API answer throughout (503 with Retry-After at most, never a "
        "traceback); afterwards every session ends, every command finishes; 0 leaks, 0 "
        "doubles, 0 missing or duplicate cost events",
    ),
    "outage_e2b": (
        "E2B unreachable for 30 s mid-storm (connections refused)",
        "no session failed or lost (reconcile passes during it mark nothing lost); "
        "afterwards every session ends, every command finishes; 0 leaks, 0 doubles, 0 "
        "missing or duplicate cost events",
    ),
    "outage_postgres": (
        "PostgreSQL restarted mid-storm (an immediate stop: every connection dropped)",
        "pages answer the product's 503 page and the API 503 JSON with Retry-After while "
        "it is down, never a traceback; afterwards every session ends, every command "
        "finishes; 0 leaks, 0 doubles, 0 missing or duplicate cost events",
    ),
    "ambiguous_create": (
        "E2B creates the sandbox, then the connection drops before the answer",
        "the session adopts that sandbox; no second sandbox is ever created",
    ),
    "storm_429": (
        "429 with Retry-After on create, pause, resume and terminate",
        "bounded retries; every retry countdown ≥ Retry-After; the session ends in the right state",
    ),
    "storm_503": (
        "503 bursts on create, pause, resume and terminate",
        "bounded retries; the session ends in the right state; a burst longer than the "
        "retry budget fails with a reason, leaking nothing",
    ),
    "poison_task": (
        "A provision job that kills its worker every time",
        "stops at the attempt limit; the session is failed with a reason; no sandbox left",
    ),
    "redelivery": (
        "Redis visibility timeout shorter than a slow job: the job is delivered twice",
        "one transition and one cost event per action",
    ),
    "publish_after_commit": (
        "Jobs enqueued inside a transaction",
        "a rolled-back transaction enqueues nothing; a committed one enqueues exactly once",
    ),
    "isolation_matrix": (
        "Every URL pattern requested by org B for org A's objects (pages, partials, exports, API)",
        "404 for every parameterised route; lists and exports hold no org A rows",
    ),
    "canary_secret": (
        "A canary E2B key and API token, then every page, log, broker message, audit "
        "row, dump and error page",
        "0 occurrences of either secret",
    ),
    "bad_input_login": ("Fuzzed login form", "0 server errors, 0 sessions for bad logins"),
    "bad_input_integration_key": (
        "Fuzzed Settings → Integrations key form",
        "0 server errors, 0 invalid keys saved",
    ),
    "bad_input_token_name": (
        "Fuzzed API token name form",
        "0 server errors, 0 invalid tokens saved",
    ),
    "bad_input_pool_form": (
        "Fuzzed pool form (typed fields)",
        "0 server errors, 0 invalid pools saved",
    ),
    "bad_input_pool_raw_json": (
        "Fuzzed pool form raw JSON config",
        "0 server errors, 0 invalid pools saved",
    ),
    "bad_input_new_session": (
        "Fuzzed New session form",
        "0 server errors, 0 invalid sessions saved",
    ),
    "bad_input_exec": (
        "Fuzzed exec console form",
        "0 server errors, 0 invalid command runs saved",
    ),
    "bad_input_query_strings": (
        "Fuzzed query strings on sessions, analytics, ledger and CSV export",
        "0 server errors",
    ),
    "api_schema": (
        "Schemathesis over /api/v1/openapi.json",
        "0 server errors; responses conform to the published schema",
    ),
    "check_deploy": (
        "manage.py check --deploy with production settings",
        "0 issues",
    ),
    "csrf_htmx": (
        "Every POST route (htmx and plain) without a CSRF token",
        "403, nothing changed",
    ),
    "login_throttle": (
        "Repeated failed logins (django-axes)",
        "locked out after 5 failures per username + IP for 15 minutes, with a clear message",
    ),
    "security_headers": (
        "Response headers of every page",
        "X-Content-Type-Options, Referrer-Policy, X-Frame-Options DENY, "
        "Cross-Origin-Opener-Policy present",
    ),
    "load": (
        "50 concurrent users for 2 minutes over the main pages and the API (gunicorn on loopback)",
        "0 errors; p50 / p95 recorded",
    ),
}


@dataclass
class Figure:
    id: str
    scenario: str
    must_hold: str
    cases: int = 0
    unit: str = "cases"
    # Numbers that back the result up (counts, percentiles); rendered under the table.
    details: dict[str, Any] = field(default_factory=dict)
    result: str = "not run"

    def add(self, n: int = 1) -> None:
        self.cases += n

    def path(self) -> Path:
        return FIGURES_DIR / f"{self.id}.json"

    def write(self, passed: bool) -> None:
        self.result = "pass" if passed else "FAIL"
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        self.path().write_text(json.dumps(asdict(self), indent=1, sort_keys=True, default=str))


def reproducible(examples: int) -> Any:
    """Hypothesis settings for generated-input tests: the same inputs on every run (so a
    rerun reproduces the figures), no example database, no time limit per example."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def load_all(directory: Path = FIGURES_DIR) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        out[data["id"]] = Figure(**data)
    return out
