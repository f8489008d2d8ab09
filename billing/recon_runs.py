"""Reconciliation runs: ask the provider, compare (``billing.reconciliation``), store the run
and its findings, alert past the threshold; the daily beat job reconciles the day that just
ended for every org with a pool or a session."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from billing.models import AMOUNT_QUANTUM, SECONDS_QUANTUM, Discrepancy, ReconciliationRun
from billing.reconciliation import ZERO, K, Listings, alert_seconds, compute
from pools.models import CapacityPool
from pools.providers import for_org
from pools.providers.base import ProviderError
from rensei import ops
from rensei.audit import record
from rensei.models import Channel, Organization
from rensei.ops import lease
from sessions.models import Session

log = logging.getLogger(__name__)
DAILY_LEASE = timedelta(hours=1)


def provider_kinds(org: Organization) -> list[str]:
    """The provider kinds the org uses: its pools', and its sessions' of the day's run."""
    kinds = set(CapacityPool.objects.filter(org=org).values_list("provider", flat=True))
    kinds |= set(
        Session.objects.filter(org=org, intervals__ended_at__isnull=True)
        .exclude(provider="")
        .values_list("provider", flat=True)
    )
    return sorted(kinds)


def list_provider(org: Organization, timeout: float | None = None) -> tuple[Listings | None, str]:
    """The provider's sandboxes of the org, by kind; (None, why) when one could not answer."""
    listings: Listings = {}
    for kind in provider_kinds(org):
        try:
            provider = for_org(org, kind, timeout=timeout)
            listings[kind] = provider.list_sandboxes(
                {"rensei_org": org.slug}, states=("running", "paused")
            )
        except (ProviderError, LookupError) as exc:
            return None, f"{kind}: {exc}"[:500]
    return listings, ""


def reconcile_day(
    org: Organization,
    day: date,
    *,
    listings: Listings | None = None,
    ask_provider: bool = True,
    timeout: float | None = None,
    now: datetime | None = None,
    actor: Any = None,
    channel: str = Channel.JOB,
) -> ReconciliationRun:
    """Run the comparison for ``org`` and ``day`` and store it (a run and its findings).
    ``listings`` given: the provider's view as already listed (tests, a batch caller);
    otherwise the provider is asked now (``ask_provider=False``: drift only)."""
    error = ""
    if listings is None and ask_provider:
        listings, error = list_provider(org, timeout)
    listed_at = now or timezone.now()
    figures = compute(org, day, listings, listed_at)
    unsettled = sum((abs(f.seconds) for f in figures.findings), ZERO)
    alerted = unsettled >= alert_seconds()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        run = ReconciliationRun.objects.create(
            org=org,
            day=day,
            ran_at=listed_at,
            provider_seen=listings is not None,
            provider_error=error,
            sessions=figures.sessions,
            ledger_seconds=figures.ledger_seconds.quantize(SECONDS_QUANTUM),
            ledger_amount=figures.ledger_amount.quantize(AMOUNT_QUANTUM),
            interval_seconds=figures.interval_seconds.quantize(SECONDS_QUANTUM),
            interval_amount=figures.interval_amount.quantize(AMOUNT_QUANTUM),
            phantom_seconds=figures.total(K.PHANTOM),
            ghost_seconds=-figures.total(K.GHOST),
            drift_seconds=sum(
                (abs(f.seconds) for f in figures.findings if f.kind == K.DRIFT), ZERO
            ),
            drift_amount=sum((abs(f.amount) for f in figures.findings if f.kind == K.DRIFT), ZERO),
            alerted=alerted,
            channel=channel,
            actor=user,
        )
        Discrepancy.objects.bulk_create(
            Discrepancy(
                run=run,
                org=org,
                day=day,
                kind=f.kind,
                session_id=f.session_id,
                sandbox_id=f.sandbox_id,
                seconds=f.seconds,
                amount=f.amount,
                note=f.note[:300],
            )
            for f in figures.findings
        )
        if user is not None:
            record(
                org=org,
                action="reconciliation.run",
                target=f"{day:%Y-%m-%d}",
                actor=actor,
                channel=channel,
                detail={"run": run.pk, "findings": len(figures.findings)},
            )
        if alerted:
            ops.bump(ops.ALERT, "reconciliation_drift")
            record(
                org=org,
                action="reconciliation.alert",
                target=f"{day:%Y-%m-%d}",
                channel=Channel.JOB,
                detail={
                    "run": run.pk,
                    "seconds": str(unsettled),
                    "findings": len(figures.findings),
                },
            )
    if alerted:
        log.error(
            "reconciliation %s %s: %s s of discrepancies (threshold %s s) in %d finding(s)",
            org.slug,
            day,
            unsettled,
            alert_seconds(),
            len(figures.findings),
        )
    return run


def orgs_to_reconcile(day: date) -> list[int]:
    """Orgs with a pool or a session that ran on or after ``day``."""
    with_pools = CapacityPool.objects.values_list("org_id", flat=True)
    with_sessions = Session.objects.filter(
        started_at__isnull=False, intervals__started_at__lt=timezone.now()
    ).values_list("org_id", flat=True)
    return sorted(set(with_pools) | set(with_sessions))


@shared_task(name="billing.recon_runs.reconcile_yesterday")
def reconcile_yesterday(day: str | None = None) -> int:
    """Beat runs this daily after the accrual: every org's day that just ended (or ``day``,
    YYYY-MM-DD). One run at a time (a lease); returns how many orgs alerted."""
    target = date.fromisoformat(day) if day else timezone.now().date() - timedelta(days=1)
    alerted = 0
    with lease("billing-reconciliation", DAILY_LEASE) as held:
        if not held:
            log.info("reconciliation of %s: another run holds the lease", target)
            return 0
        for org in Organization.objects.filter(pk__in=orgs_to_reconcile(target)):
            try:
                alerted += reconcile_day(org, target).alerted
            except Exception:
                # One org's problem (no rate card, a provider bug) must not stop the others.
                log.exception("reconciliation of %s for %s failed", org.slug, target)
    return alerted
