"""Three-way reconciliation of an org's day: our ledger, our running intervals, and the
provider's own view of the sandboxes (the list API: each sandbox's state and ``started_at``;
the ``e2b`` SDK offers no per-sandbox lifecycle history to compare against, so the
provider's view is what it lists at the time of the run).

Per session, for one UTC day D (the ledger's usage day: rows are attributed by their
interval's end, so a late row dated in an open month still counts for D):

- **drift** = seconds and money the ledger holds for D minus what the closed intervals that
  ended in D cost (each priced with the card of its start, exactly as the ledger prices
  it). Zero on a clean ledger; a reversal, a lost or a doubled row shows here.
- **phantom seconds**: a sandbox the provider lists as running while we have no open
  interval for it: running since the later of its ``started_at`` and the end of our last
  interval for that session (or, with no session of ours at all, since ``started_at``).
- **ghost seconds**: an open interval of ours whose sandbox the provider does not list as
  running (gone, or paused): since the interval started.

Phantom and ghost stretches count the part inside D, up to the run's listing time. What an
earlier settlement already corrected is subtracted, so a settled finding does not come back
on a second run. Each finding is a ``Discrepancy`` row linked to its session; settling one
(``billing.settlement``) writes a ledger entry with a reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Max, Q, Sum

from billing.ledger import billing_provider, exact_seconds, price, price_per_second, rate_card_for
from billing.models import (
    AMOUNT_QUANTUM,
    SECONDS_QUANTUM,
    CostEvent,
    Discrepancy,
    DiscrepancyKind,
    RateCard,
)
from billing.periods import midnight
from pools.providers.base import SandboxInfo
from rensei.models import Organization
from sessions.models import RunningInterval, Session

log = logging.getLogger(__name__)
ZERO = Decimal(0)
K = DiscrepancyKind
HEALTH_CHECK_PREFIX = "health-check-"
# Unsettled discrepancy seconds (phantom + ghost + |drift|) at or past which a run alerts.
DEFAULT_ALERT_SECONDS = Decimal(60)
Listings = dict[str, list[SandboxInfo]]


def alert_seconds() -> Decimal:
    return Decimal(str(getattr(settings, "RENSEI_RECONCILE_ALERT_SECONDS", DEFAULT_ALERT_SECONDS)))


def day_bounds(day: date) -> tuple[datetime, datetime]:
    return midnight(day), midnight(day + timedelta(days=1))


def _overlap(start: datetime, end: datetime, lo: datetime, hi: datetime) -> Decimal:
    a, b = max(start, lo), min(end, hi)
    return exact_seconds(b - a) if b > a else ZERO


@dataclass
class Finding:
    kind: str
    session_id: int | None
    sandbox_id: str
    seconds: Decimal
    amount: Decimal
    note: str


@dataclass
class DayFigures:
    sessions: int = 0
    ledger_seconds: Decimal = ZERO
    ledger_amount: Decimal = ZERO
    interval_seconds: Decimal = ZERO
    interval_amount: Decimal = ZERO
    findings: list[Finding] = field(default_factory=list)

    def total(self, kind: str) -> Decimal:
        return sum((f.seconds for f in self.findings if f.kind == kind), ZERO)


class _Cards:
    """Rate cards by (provider, instant), fetched once per provider and day."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, date], RateCard] = {}

    def at(self, provider: str, when: datetime) -> RateCard:
        # Cards change only at UTC midnights: one card per provider and day.
        key = (provider, when.date())
        if key not in self._cache:
            self._cache[key] = rate_card_for(provider, when)
        return self._cache[key]


def _settled(org_id: int, day: date) -> dict[tuple[str, int | None, str], Decimal]:
    """Seconds already settled per (kind, session, sandbox) for the day."""
    out: dict[tuple[str, int | None, str], Decimal] = defaultdict(lambda: ZERO)
    rows = Discrepancy.objects.filter(
        org_id=org_id, day=day, settled_at__isnull=False, kind__in=[K.PHANTOM, K.GHOST]
    ).values_list("kind", "session_id", "sandbox_id", "seconds")
    for kind, session_id, sandbox_id, seconds in rows:
        out[(kind, session_id, "" if session_id else sandbox_id)] += abs(Decimal(str(seconds)))
    return out


def compute(
    org: Organization, day: date, listings: Listings | None, listed_at: datetime
) -> DayFigures:
    """What the run finds (nothing written). ``listings``: the provider's sandboxes by
    provider kind; None when the provider could not be asked (drift only)."""
    start, end = day_bounds(day)
    upto = min(listed_at, end)
    cards = _Cards()
    figures = DayFigures()

    # 1. The ledger per session for D (settlements of phantom/ghost findings aside: they
    #    correct the provider's view, not the intervals').
    billed: dict[int | None, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    ledger = (
        CostEvent.objects.filter(org=org, occurred_at__gt=start)
        .filter(interval_end__gt=start, interval_end__lte=end)
        .exclude(settles__kind__in=[K.PHANTOM, K.GHOST])
        .values_list("session_id")
        .annotate(s=Sum("quantity_seconds"), a=Sum("amount"))
        .order_by()
    )
    for session_id, seconds, amount in ledger:
        billed[session_id][0] += Decimal(str(seconds or 0))
        billed[session_id][1] += Decimal(str(amount or 0))

    # 2. Closed intervals that ended in D, priced as the ledger prices them.
    metered: dict[int, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    closed = RunningInterval.objects.filter(
        session__org=org, ended_at__gt=start, ended_at__lte=end
    ).values_list(
        "session_id",
        "started_at",
        "ended_at",
        "session__vcpu",
        "session__memory_mb",
        "session__provider",
        "session__pool__provider",
    )
    for interval_of, began, ended, vcpu, mem, own, pool_kind in closed:
        assert ended is not None  # filtered on ended_at > start
        seconds = exact_seconds(ended - began)
        provider = own or pool_kind or "e2b"
        metered[interval_of][0] += seconds
        metered[interval_of][1] += price(seconds, vcpu or 0, mem or 0, cards.at(provider, began))

    every: set[int | None] = set(billed) | set(metered)
    for sid in sorted(every, key=lambda s: s or 0):
        b_seconds, b_amount = billed.get(sid, [ZERO, ZERO])
        m_seconds, m_amount = metered.get(sid, [ZERO, ZERO]) if sid is not None else [ZERO, ZERO]
        figures.ledger_seconds += b_seconds
        figures.ledger_amount += b_amount
        figures.interval_seconds += m_seconds
        figures.interval_amount += m_amount
        d_seconds = (m_seconds - b_seconds).quantize(SECONDS_QUANTUM)
        d_amount = (m_amount - b_amount).quantize(AMOUNT_QUANTUM)
        if d_seconds or d_amount:
            figures.findings.append(
                Finding(
                    K.DRIFT,
                    sid,
                    "",
                    d_seconds,
                    d_amount,
                    "the ledger holds less than the intervals"
                    if d_amount > 0
                    else "the ledger holds more than the intervals",
                )
            )
    figures.sessions = len(set(billed) | set(metered))
    if listings is None:
        return figures

    # 3. The provider's view against our open intervals.
    settled = _settled(org.pk, day)
    opened = {
        row[0]: row
        for row in RunningInterval.objects.filter(
            session__org=org, ended_at__isnull=True
        ).values_list(
            "session_id",
            "started_at",
            "session__sandbox_id",
            "session__vcpu",
            "session__memory_mb",
            "session__provider",
            "session__pool__provider",
        )
    }
    kinds_listed = set(listings)
    running = {
        sb.sandbox_id: sb
        for sandboxes in listings.values()
        for sb in sandboxes
        if sb.state == "running"
        and not sb.metadata.get("rensei_session", "").startswith(HEALTH_CHECK_PREFIX)
    }

    def remaining(kind: str, sid: int | None, sandbox_id: str, seconds: Decimal) -> Decimal:
        return seconds - settled[(kind, sid, "" if sid else sandbox_id)]

    # Ghosts: an open interval of ours, its sandbox not running at the provider.
    for row in opened.values():
        sid, began, sandbox_id, vcpu, mem, own, pool_kind = row
        provider = own or pool_kind or "e2b"
        if provider not in kinds_listed or (sandbox_id and sandbox_id in running):
            continue
        seconds = remaining(K.GHOST, sid, sandbox_id, _overlap(began, upto, start, end))
        if seconds > 0:
            per = price_per_second(vcpu or 0, mem or 0, cards.at(provider, start))
            figures.findings.append(
                Finding(
                    K.GHOST,
                    sid,
                    sandbox_id,
                    -seconds,
                    -(seconds * per).quantize(AMOUNT_QUANTUM),
                    "our interval is open; the provider does not list the sandbox as running",
                )
            )

    # Phantoms: running at the provider, no open interval of ours.
    by_sandbox = {row[2]: row[0] for row in opened.values() if row[2]}
    tagged = {
        int(tag): sb
        for sb in running.values()
        if (tag := sb.metadata.get("rensei_session", "")).isdigit()
    }
    known = {
        s.pk: s
        for s in Session.objects.select_related("pool").filter(
            Q(org=org) & (Q(sandbox_id__in=list(running)) | Q(pk__in=list(tagged)))
        )
    }
    owner_of = {s.sandbox_id: s for s in known.values() if s.sandbox_id}
    last_end = dict(
        RunningInterval.objects.filter(session_id__in=list(known))
        .values_list("session_id")
        .annotate(last=Max("ended_at"))
        .order_by()
    )
    for sandbox_id, sb in sorted(running.items()):
        if sandbox_id in by_sandbox:
            continue
        session = owner_of.get(sandbox_id)
        if session is None:
            tag = sb.metadata.get("rensei_session", "")
            session = known.get(int(tag)) if tag.isdigit() else None
        if session is not None and session.pk in opened:
            continue  # our interval is open under another sandbox id: a ghost, not a phantom
        since = sb.started_at or start
        if session is not None and last_end.get(session.pk):
            since = max(since, last_end[session.pk])
        owner_id = session.pk if session is not None else None
        seconds = remaining(K.PHANTOM, owner_id, sandbox_id, _overlap(since, upto, start, end))
        if seconds <= 0:
            continue
        provider = billing_provider(session) if session is not None else _kind_of(listings, sb)
        vcpu = (session.vcpu if session is not None else None) or sb.vcpu
        mem = (session.memory_mb if session is not None else None) or sb.memory_mb
        per = price_per_second(vcpu or 0, mem or 0, cards.at(provider, start))
        figures.findings.append(
            Finding(
                K.PHANTOM,
                owner_id,
                sandbox_id,
                seconds,
                (seconds * per).quantize(AMOUNT_QUANTUM),
                "running at the provider with no interval of ours"
                + ("" if session is not None else " (no session of ours claims it)"),
            )
        )
    return figures


def _kind_of(listings: Listings, sb: SandboxInfo) -> str:
    for kind, sandboxes in listings.items():
        if any(s.sandbox_id == sb.sandbox_id for s in sandboxes):
            return kind
    return "e2b"
