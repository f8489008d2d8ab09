"""Thirty days of believable past for the demo org: sessions that ran, paused, resumed and
ended, each with its running intervals and ledger rows.

Nothing here invents a shortcut around the product's own rules. Every state change goes
through ``sessions.state.transition`` (with the time it happened), every running span
through ``sessions.intervals.open_interval`` / ``close_open_interval`` (which emits the cost
event), and spans crossing a UTC midnight are split there by the billing accrual's own
``split_session_at_midnights``, exactly as the nightly job would have done. Only the
timestamps that the models stamp themselves (``created_at``, the timeline's ``at``) are moved
back afterwards.

The shape is deterministic for a given "now" (a fixed random seed), and skewed on purpose:
a few issues account for most of the cost.

It lives in billing, the top layer, because it writes every app's rows (see the README's
Layout section); what the demo org holds (names, issues, caps) is data in ``rensei.demo``.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.models import CostEvent
from billing.periods import midnight_floor
from billing.tasks import split_session_at_midnights
from pools.models import CapacityPool
from rensei.demo import DemoIssue
from rensei.models import Organization
from sessions.intervals import close_open_interval, open_interval
from sessions.models import Issue, Session, SessionState, SessionTransition
from sessions.state import record_created, transition

SEED = 1142
DAYS = 30
TEMPLATE = "donmai-worker"
VCPU, MEMORY_MB = 2, 1024  # what the emulator's donmai-worker template reports
LATEST_END = timedelta(minutes=15)  # every past session ended at least this long ago
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class Plan:
    """One past session: when it was created, when it ran, how it ended."""

    issue_key: str | None
    created: datetime
    runs: list[tuple[datetime, datetime]] = field(default_factory=list)
    end: str = "terminated"  # terminated | lost | failed
    runtime_kinds: list[str] = field(default_factory=lambda: ["npm"])
    requirement_kinds: list[str] = field(default_factory=lambda: ["git"])
    failure: str = ""
    provisioned: bool = True  # False: dispatch found no pool (never reached provisioning)
    routing: dict[str, Any] = field(default_factory=dict)


def build_history(
    org: Organization, pool: CapacityPool, issues: Sequence[DemoIssue]
) -> dict[str, int]:
    """Write the past into ``org``; returns counts for the seed's summary."""
    now = timezone.now()
    rng = random.Random(SEED)
    plans = list(past_sessions(issues, now, rng)) + list(recent_sessions(now, pool))
    plans.sort(key=lambda p: p.created)
    with transaction.atomic():
        before = CostEvent.objects.filter(org=org).count()
        by_key = {issue.key: issue for issue in Issue.objects.filter(org=org)}
        for plan in plans:
            write_session(org, pool, plan, rng, by_key)
        after = CostEvent.objects.filter(org=org).count()
    return {"sessions": len(plans), "cost_events": after - before}


# --- planning --------------------------------------------------------------------------------


def past_sessions(issues: Sequence[DemoIssue], now: datetime, rng: random.Random) -> Iterator[Plan]:
    """The issues' sessions spread over the last 30 days (one day each, stratified so every
    part of the month has some), with 1–3 running spans separated by pauses."""
    jobs: list[tuple[DemoIssue | None, int]] = [
        (issue, i) for issue in issues for i in range(issue.sessions)
    ]
    jobs.append((None, 0))  # two sessions the dispatcher started without an issue
    jobs.append((None, 1))
    rng.shuffle(jobs)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for index, (issue, _) in enumerate(jobs):
        days_ago = DAYS - 1 - (index * (DAYS - 1)) // len(jobs)  # 29 … 1
        day = today - timedelta(days=days_ago)
        if issue is None:
            hours = rng.uniform(0.4, 1.2)
        else:
            hours = issue.hours / issue.sessions * rng.uniform(0.7, 1.3)
        start = day + timedelta(hours=rng.uniform(0, 20))
        runs = _spans(start, hours, rng)
        overflow = runs[-1][1] - (now - LATEST_END)
        if overflow > timedelta(0):  # a long one that would end in the future: move it back
            runs = [(a - overflow, b - overflow) for a, b in runs]
        kinds = rng.choice([(["npm"], ["git"]), (["python-pip"], ["git", "long-running"])])
        yield Plan(
            issue_key=issue.key if issue else None,
            created=runs[0][0] - timedelta(seconds=rng.uniform(3, 40)),
            runs=runs,
            runtime_kinds=list(kinds[0]),
            requirement_kinds=list(kinds[1]),
        )


def _spans(start: datetime, hours: float, rng: random.Random) -> list[tuple[datetime, datetime]]:
    parts = rng.choice([1, 1, 2, 2, 3])
    weights = [rng.uniform(0.5, 1.5) for _ in range(parts)]
    runs = []
    at = start
    for weight in weights:
        length = timedelta(hours=hours * weight / sum(weights))
        runs.append((at, at + length))
        at += length + timedelta(minutes=rng.uniform(5, 90))  # paused in between ($0)
    return runs


def recent_sessions(now: datetime, pool: CapacityPool) -> list[Plan]:
    """Today's story: two finished sessions, one lost sandbox, two that failed."""
    h = timedelta(hours=1)
    m = timedelta(minutes=1)
    return [
        Plan("ENG-149", now - 3 * h - 11 * m, [(now - 3 * h - 10 * m, now - 100 * m)]),
        Plan("ENG-107", now - 56 * m, [(now - 55 * m, now - 20 * m)]),
        Plan(
            "ENG-136",
            now - 5 * h - m,
            [(now - 5 * h, now - 4 * h - 10 * m)],
            end="lost",
            failure="The sandbox {sandbox} no longer exists in the provider.",
        ),
        Plan(
            "ENG-117",
            now - 2 * h,
            end="failed",
            runtime_kinds=["python-pip", "toolchain:go"],
            requirement_kinds=["git"],
            provisioned=False,
            failure=(
                f"No pool can run this session ({pool.name}: missing toolchain:go; "
                "demo-base: disabled)."
            ),
            routing={
                "skipped": [
                    {"pool": pool.name, "reason": "missing toolchain:go"},
                    {"pool": "demo-base", "reason": "disabled"},
                ]
            },
        ),
        Plan(
            "ENG-123",
            now - timedelta(days=9, hours=2),
            end="failed",
            failure=(
                "Gave up after 5 attempts: E2B is busy: too many concurrent sandboxes "
                "(429). (attempt 5 of 5)"
            ),
            routing={"skipped": [], "chosen": pool.name},
        ),
    ]


# --- writing ---------------------------------------------------------------------------------


def write_session(
    org: Organization,
    pool: CapacityPool,
    plan: Plan,
    rng: random.Random,
    issues: dict[str, Issue],
) -> Session:
    S = SessionState
    issue = issues.get(plan.issue_key) if plan.issue_key else None
    session = Session.objects.create(
        org=org,
        issue=issue,
        runtime_kinds=plan.runtime_kinds,
        requirement_kinds=plan.requirement_kinds,
    )
    record_created(session, note="created via api")
    times = [plan.created]
    opened: list[datetime] = []

    def step(to: str, expected: str, at: datetime, note: str, **values: Any) -> None:
        if not transition(session, to, expected=[expected], note=note, at=at, **values):
            raise RuntimeError(f"demo history: {expected} → {to} refused for {session}")
        times.append(at)

    def close(at: datetime, reason: str) -> None:
        if midnight_floor(at) > opened[-1]:  # it ran past midnight: the accrual's split
            split_session_at_midnights(session.pk, midnight_floor(at))
        close_open_interval(session, at, reason)

    tick = timedelta(seconds=1)
    if not plan.provisioned:
        step(
            S.FAILED,
            S.QUEUED,
            plan.created + tick,
            plan.failure,
            routing=plan.routing,
            last_error=plan.failure,
        )
    else:
        step(
            S.PROVISIONING,
            S.QUEUED,
            plan.created + tick,
            f"dispatched to {pool.name}",
            pool=pool,
            provider=pool.provider,
            routing=plan.routing or {"skipped": [], "chosen": pool.name},
        )
        if plan.end == "failed":
            step(
                S.FAILED,
                S.PROVISIONING,
                plan.created + timedelta(minutes=3),
                plan.failure,
                attempts=5,
                last_error=plan.failure,
            )
    if plan.runs:
        sandbox = "".join(rng.choice(_ID_ALPHABET) for _ in range(20))
        first = plan.runs[0][0]
        step(
            S.RUNNING,
            S.PROVISIONING,
            first,
            f"sandbox {sandbox} created",
            sandbox_id=sandbox,
            template=TEMPLATE,
            vcpu=VCPU,
            memory_mb=MEMORY_MB,
            attempts=1,
        )
        for n, (start, end) in enumerate(plan.runs):
            if n:
                step(S.RESUMING, S.PAUSED, start - 2 * tick, "resume requested by api")
                step(S.RUNNING, S.RESUMING, start, "resumed")
            open_interval(session, start)
            opened.append(start)
            if n < len(plan.runs) - 1:
                step(S.PAUSING, S.RUNNING, end - tick, "pause requested by api")
                close(end, "pause")
                step(S.PAUSED, S.PAUSING, end, "paused")
            elif plan.end == "lost":
                reason = plan.failure.format(sandbox=sandbox)
                close(end, "lost")
                step(S.LOST, S.RUNNING, end, reason, last_error=reason)
            else:
                step(S.TERMINATING, S.RUNNING, end - 2 * tick, "terminate requested by api")
                close(end, "terminate")
                step(S.TERMINATED, S.TERMINATING, end, "terminated")

    # The models stamp these with the time of writing; the story happened earlier.
    Session.objects.filter(pk=session.pk).update(created_at=plan.created)
    rows = list(SessionTransition.objects.filter(session=session).order_by("id"))
    for row, at in zip(rows, times, strict=True):
        row.at = at
    SessionTransition.objects.bulk_update(rows, ["at"])
    return session
