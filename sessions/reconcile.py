"""The reconciler: our session records against the provider's view of the world.

Per org (beat every minute through ``sessions.tasks.reconcile_all``; ``manage.py reconcile``;
the Capacity page's "Reconcile now" enqueues ``sessions.tasks.reconcile_org``):

1. List the org's sandboxes by metadata ``{rensei_org: slug}``, running and paused.
2. Each sandbox: ours and known → compare states; made for a ``provisioning`` session that
   has not recorded it yet (same request id, older than ``ADOPT_GRACE``) → adopt; a fresh
   health-check sandbox → leave; anything else → an orphan: kill it.
3. Each running/paused session whose sandbox is missing from the list (and confirmed gone
   by a direct look-up) → ``lost``, its running interval closed and billed. A running
   session whose sandbox is paused (``e2b sandbox pause <id>``, auto-pause on timeout) →
   ``paused``; a paused one that runs again → ``running``.
4. Sessions stuck in a transitional state past their deadline: the job is enqueued again
   (provisioning gives up after the attempt limit); queued sessions are dispatched again.

Every decision goes through a conditional update, so a pass racing a job (or another pass)
loses quietly, and a second pass right after the first changes nothing.

Queries do not grow with the org: the live sessions are read once, four columns each, and
whole rows only for the sessions a decision may touch (a sandbox out of step, an adoption
candidate or the session an orphan names, a sandbox missing from the list), so a pass in
step with E2B costs the same few queries at 50 sandboxes as at 5,000 (B5 in
docs/performance.md; tests/sessions_engine/test_reconcile_queries.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from pools.models import CapacityPool
from pools.providers import for_org
from pools.providers.base import Provider, ProviderError, SandboxInfo
from rensei.audit import record
from rensei.models import Channel, Organization
from rensei.ops import lease
from sessions import enqueue, jobs
from sessions.audit import audit, describe
from sessions.dispatch import dispatch_org_waiting
from sessions.lifecycle import free_slot, mark_lost, mark_paused, mark_running, record_handle
from sessions.models import (
    LIVE_STATES,
    CommandRun,
    CommandRunState,
    Session,
    SessionState,
)
from sessions.state import transition

log = logging.getLogger(__name__)
S = SessionState

ADOPT_GRACE = timedelta(seconds=30)  # let the provision job record its own sandbox first
HEALTH_CHECK_GRACE = timedelta(minutes=5)
PROVISION_DEADLINE = timedelta(minutes=10)
ACTION_DEADLINE = timedelta(minutes=5)  # pausing, resuming, terminating
COMMAND_GRACE = timedelta(minutes=10)  # beyond a command's own timeout
HEALTH_CHECK_PREFIX = "health-check-"

SUMMARY_KEYS = (
    "sandboxes_seen",
    "orphans_killed",
    "adopted",
    "lost",
    "marked_paused",
    "marked_running",
    "retried",
    "failed",
    "dispatched",
    "commands_expired",
    "errors",
    "skipped_busy",  # another pass over the org held its lease: this one did nothing
)
# One pass per org at a time, however many beat schedulers or workers run (rensei.ops). A
# pass outliving it (a stalled provider) may overlap the next; its updates are conditional.
PASS_LEASE = timedelta(minutes=5)
FETCH_CHUNK = 500  # sessions read whole per query, for the decisions of a pass


def orgs_to_reconcile() -> list[int]:
    """Orgs with a pool, or with a live session (a pool may have been disabled)."""
    with_pools = CapacityPool.objects.values_list("org_id", flat=True)
    with_live = Session.objects.filter(state__in=LIVE_STATES).values_list("org_id", flat=True)
    return sorted(set(with_pools) | set(with_live))


def reconcile_org(org_id: int) -> dict[str, int]:
    """One pass over one org; returns counts per action (every key of SUMMARY_KEYS)."""
    summary: Counter[str] = Counter({key: 0 for key in SUMMARY_KEYS})
    with lease(f"reconcile:{org_id}", PASS_LEASE) as held:
        if held:
            _pass(org_id, summary)
        else:
            summary["skipped_busy"] += 1
    return dict(summary)


def _pass(org_id: int, summary: Counter[str]) -> None:
    org = Organization.objects.filter(pk=org_id).first()
    if org is None:
        return
    kinds = set(CapacityPool.objects.filter(org=org).values_list("provider", flat=True))
    kinds |= set(
        Session.objects.filter(org=org, state__in=LIVE_STATES)
        .exclude(provider="")
        .values_list("provider", flat=True)
        .order_by()
        .distinct()
    )
    for kind in sorted(kinds):
        try:
            provider = for_org(org, kind)
            _reconcile_sandboxes(org, kind, provider, summary)
        except (ProviderError, LookupError) as exc:
            summary["errors"] += 1
            log.warning("reconcile %s/%s: %s", org.slug, kind, exc)
            record(
                org=org,
                action="reconcile.failed",
                target=kind,
                channel=Channel.JOB,
                detail={"reason": str(exc)[:500]},
            )
    _unstick(org, summary)
    summary["dispatched"] += dispatch_org_waiting(org.pk)
    _expire_commands(org, summary)


def _reconcile_sandboxes(
    org: Organization, kind: str, provider: Provider, summary: Counter[str]
) -> None:
    listed_at = timezone.now()
    sandboxes = provider.list_sandboxes({"rensei_org": org.slug}, states=("running", "paused"))
    summary["sandboxes_seen"] += len(sandboxes)
    by_id = {sb.sandbox_id: sb for sb in sandboxes}
    # Read after listing: a session that recorded its sandbox in between is seen with it.
    # Telling a match from a mismatch takes four columns; whole rows are read only for the
    # sessions a decision may touch, so a pass in step with E2B reads no row twice.
    live = list(
        Session.objects.filter(org=org, provider=kind, state__in=LIVE_STATES)
        .order_by()
        .values_list("pk", "state", "sandbox_id", "state_changed_at")
    )
    owner_of = {sandbox_id: (pk, state) for pk, state, sandbox_id, _ in live if sandbox_id}
    missing = [
        pk
        for pk, state, sandbox_id, changed_at in live
        if sandbox_id
        and sandbox_id not in by_id
        and state in (S.RUNNING, S.PAUSED)
        and changed_at < listed_at
    ]
    wanted = set(missing)
    for sb in sandboxes:
        owner = owner_of.get(sb.sandbox_id)
        if owner is not None:
            if _out_of_step(owner[1], sb.state):
                wanted.add(owner[0])
        elif (tag := sb.metadata.get("rensei_session", "")).isdigit():
            wanted.add(int(tag))  # adoption candidate, or the session an orphan names
    by_pk = _sessions(org, kind, wanted)

    for sb in sandboxes:
        owner = owner_of.get(sb.sandbox_id)
        if owner is not None:
            if (session := by_pk.get(owner[0])) is not None:
                _sync_state(session, sb, summary)
            continue
        tag = sb.metadata.get("rensei_session", "")
        if tag.startswith(HEALTH_CHECK_PREFIX) and _age(sb, listed_at) < HEALTH_CHECK_GRACE:
            continue  # a pool check in progress kills its own sandbox
        candidate = by_pk.get(int(tag)) if tag.isdigit() else None
        if (
            candidate is not None
            and candidate.state == S.PROVISIONING
            and not candidate.sandbox_id
            and sb.metadata.get("rensei_request") == str(candidate.request_id)
        ):
            if _age(sb, listed_at) >= ADOPT_GRACE and _adopt(candidate, sb, provider):
                summary["adopted"] += 1
            continue
        _kill_orphan(org, provider, sb, candidate, summary)

    for pk in missing:
        session = by_pk.get(pk)
        if (
            session is not None
            and session.sandbox_id not in by_id
            and session.state in (S.RUNNING, S.PAUSED)
            and session.state_changed_at < listed_at
        ):
            _check_missing(session, provider, summary)


def _out_of_step(session_state: str, sandbox_state: str) -> bool:
    """What ``_sync_state`` acts on: a running session's sandbox paused, or the reverse."""
    return (session_state, sandbox_state) in ((S.RUNNING, "paused"), (S.PAUSED, "running"))


def _sessions(org: Organization, kind: str, pks: set[int]) -> dict[int, Session]:
    """Whole rows of the org's ``kind`` sessions among ``pks``, any state, by pk; one query
    per ``FETCH_CHUNK`` of them (none when nothing needs a decision)."""
    ordered = sorted(pks)
    found: dict[int, Session] = {}
    for i in range(0, len(ordered), FETCH_CHUNK):
        chunk = ordered[i : i + FETCH_CHUNK]
        rows = Session.objects.select_related("org", "pool", "issue").filter(
            org=org, provider=kind, pk__in=chunk
        )
        found.update((s.pk, s) for s in rows)
    return found


def _age(sb: SandboxInfo, now: datetime) -> timedelta:
    return now - sb.started_at if sb.started_at else timedelta.max


def _sync_state(session: Session, sb: SandboxInfo, summary: Counter[str]) -> None:
    if session.state == S.RUNNING and sb.state == "paused":
        if mark_paused(
            session,
            "paused outside the platform (E2B CLI, or auto-pause on timeout)",
            expected=[S.RUNNING],
        ):
            summary["marked_paused"] += 1
    elif (
        session.state == S.PAUSED
        and sb.state == "running"
        and mark_running(session, "resumed outside the platform", expected=[S.PAUSED])
    ):
        summary["marked_running"] += 1


def _adopt(session: Session, sb: SandboxInfo, provider: Provider) -> bool:
    handle = jobs.handle_from_info(sb)
    if not record_handle(session, handle, note="adopted by the reconciler"):
        return False
    if session.pool is not None and session.pool.config.get("launchRunnerInline"):
        try:
            jobs.launch_runner(provider, handle, session)
        except ProviderError as exc:
            # A killed sandbox shows up as lost on the next pass, with this reason logged.
            log.warning("session %s: launching the runner failed: %s", session.pk, exc)
    audit(session, "session.provisioned", sandbox=sb.sandbox_id, adopted=True, by="reconciler")
    return True


def _kill_orphan(
    org: Organization,
    provider: Provider,
    sb: SandboxInfo,
    session: Session | None,
    summary: Counter[str],
) -> None:
    try:
        provider.terminate(sb.sandbox_id)
    except ProviderError as exc:
        if exc.status_code != 404:
            summary["errors"] += 1
            log.warning("could not kill orphan sandbox %s: %s", sb.sandbox_id, exc)
            return
    summary["orphans_killed"] += 1
    record(
        org=org,
        action="sandbox.orphan_killed",
        target=f"sandbox {sb.sandbox_id}",
        channel=Channel.JOB,
        detail={
            "session": sb.metadata.get("rensei_session", ""),
            "session_state": session.state if session is not None else "",
            "template": sb.template,
            "sandbox_state": sb.state,
        },
    )


def _check_missing(session: Session, provider: Provider, summary: Counter[str]) -> None:
    """Not in the list: look it up directly before declaring it lost (lists can lag)."""
    try:
        info = provider.status(session.sandbox_id)
    except ProviderError as exc:
        summary["errors"] += 1
        log.warning("status of %s: %s", session.sandbox_id, exc)
        return
    if info is None:
        if mark_lost(
            session, f"The sandbox {session.sandbox_id} no longer exists in the provider."
        ):
            summary["lost"] += 1
    else:
        _sync_state(session, info, summary)


def _unstick(org: Organization, summary: Counter[str]) -> None:
    now = timezone.now()
    stuck = Session.objects.select_related("org", "pool", "issue").filter(
        Q(state=S.PROVISIONING, state_changed_at__lt=now - PROVISION_DEADLINE)
        | Q(
            state__in=[S.PAUSING, S.RESUMING, S.TERMINATING],
            state_changed_at__lt=now - ACTION_DEADLINE,
        ),
        org=org,
    )
    job_for: dict[str, str] = {
        S.PROVISIONING: enqueue.PROVISION,
        S.PAUSING: enqueue.PAUSE,
        S.RESUMING: enqueue.RESUME,
        S.TERMINATING: enqueue.TERMINATE,
    }
    for session in stuck:
        state = session.state
        if state == S.PROVISIONING and session.attempts >= jobs.MAX_PROVISION_ATTEMPTS:
            reason = f"Gave up after {session.attempts} attempts: provisioning did not finish" + (
                f" ({session.last_error})" if session.last_error else "."
            )
            if transition(session, S.FAILED, expected=[state], note=reason, last_error=reason):
                summary["failed"] += 1
                audit(session, "session.failed", reason=reason, by="reconciler")
                free_slot(session)
            continue
        # Same state again: restarts the deadline, so the next pass does not re-enqueue it.
        note = f"still {state} after the deadline; the reconciler enqueued its job again"
        if transition(session, state, expected=[state], note=note):
            enqueue.send(job_for[state], session.pk)
            summary["retried"] += 1
            record(
                org=org,
                action="session.job_reenqueued",
                target=describe(session),
                channel=Channel.JOB,
                detail={"state": state},
            )


def _expire_commands(org: Organization, summary: Counter[str]) -> None:
    """Command runs whose job vanished (worker lost): error, and forget their env values."""
    now = timezone.now()
    candidates = CommandRun.objects.filter(
        session__org=org,
        state__in=[CommandRunState.QUEUED, CommandRunState.RUNNING],
        created_at__lt=now - COMMAND_GRACE,
    )
    for run in candidates:
        if run.created_at + timedelta(seconds=run.timeout_seconds) + COMMAND_GRACE > now:
            continue
        if CommandRun.objects.filter(pk=run.pk, state=run.state).update(
            state=CommandRunState.ERROR,
            error="The command's job never finished (the worker was lost?).",
            finished_at=now,
            env_encrypted="",
        ):
            summary["commands_expired"] += 1
