"""Dispatch: which pool runs a session, and why every other pool did not.

The first enabled pool of the org (by order) whose effective provides cover the session's
runtime and requirement kinds and that is under its soft concurrency cap wins. A pool at
its cap makes the session wait ``queued`` (it starts when a slot frees: ``dispatch_waiting``
runs when a session on the pool stops using one, and the reconciler retries every minute).
No eligible pool at all fails the session with each pool's reason.

A resume takes a slot too: ``resume_or_wait`` resumes a paused session when its pool has a
free slot, and otherwise leaves it ``paused`` with ``resume_requested_at`` set. When a slot
frees, waiting resumes and queued sessions are offered it in one line, oldest request first
(a queued session's request is its creation). "Live" for the cap is ``holding_slots``:
paused and queued sessions hold no slot.

``session.routing`` keeps the decision for the session page and the API::

    {"chosen": "demo-e2b",
     "skipped": [{"pool": "x", "reason": "disabled"},
                 {"pool": "y", "reason": "missing toolchain:go"},
                 {"pool": "z", "reason": "at its cap (2/2)"}],
     "failed_over": [{"pool": "w", "reason": "unknown template"}],   # permanent errors
     "waiting_for": ["z"]}                                            # while queued
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from pools.kinds import covers
from pools.models import CapacityPool
from sessions import admission, enqueue
from sessions.models import Session, SessionState, SessionTransition
from sessions.state import (
    SLOT_STATES,
    record_created,
    record_created_moved,
    record_waiting,
    transition,
)

S = SessionState

PROVISIONING = "provisioning"
RESUMING = "resuming"
WAITING = "waiting"
FAILED = "failed"
NOOP = "noop"


@dataclass
class Decision:
    pool: CapacityPool | None
    skipped: list[dict[str, str]] = field(default_factory=list)
    waiting_for: list[str] = field(default_factory=list)
    budget: str = ""  # why a budget keeps it waiting (sessions.admission)

    def failure_message(self, session: Session) -> str:
        if not self.skipped:
            if session.requested_pool:
                return f"The pool “{session.requested_pool}” no longer exists."
            return (
                "This organisation has no capacity pools: add one in Settings → Execution → "
                "Capacity."
            )
        reasons = "; ".join(f"{s['pool']}: {s['reason']}" for s in self.skipped)
        return f"No pool can run this session ({reasons})."


def holding_slots() -> QuerySet[Session]:
    """The one definition of "live" for a pool's soft cap: sessions whose sandbox may run.

    That is ``SLOT_STATES`` (provisioning, running, pausing, resuming, terminating), except
    a session asked to terminate while paused or queued: its sandbox is paused or was never
    made, so it holds no E2B concurrency slot on its way out.
    """
    idle_stop = SessionTransition.objects.filter(
        session_id=OuterRef("pk"), to_state=S.TERMINATING, from_state__in=[S.PAUSED, S.QUEUED]
    )
    return Session.objects.filter(state__in=SLOT_STATES).exclude(
        Q(state=S.TERMINATING) & Q(Exists(idle_stop))
    )


def slots_in_use(pool_ids: list[int], exclude_session: int | None = None) -> dict[int, int]:
    """Live sessions (``holding_slots``) on each pool, in one query."""
    rows = (
        holding_slots()
        .filter(pool_id__in=pool_ids)
        .exclude(pk=exclude_session or 0)
        .values("pool_id")
        .annotate(n=Count("id"))
    )
    return {row["pool_id"]: row["n"] for row in rows}


def lock_pools(org_id: int) -> list[CapacityPool]:
    """The org's pools in priority order, row-locked until the transaction ends.

    Every slot taker (dispatch, resume) locks the same rows in the same order, so two of
    them cannot both take a pool's last slot and cannot deadlock each other. (SQLite runs
    write transactions one at a time: ``transaction_mode`` IMMEDIATE in the settings.)
    """
    return list(
        CapacityPool.objects.select_for_update()
        .filter(org_id=org_id)
        .order_by("order", "name", "pk")
    )


def cap_reason(pool: CapacityPool, used: int) -> str | None:
    """``at its cap (4/4)`` when ``used`` slots fill ``pool``'s cap; None when one is free."""
    cap = pool.concurrency_cap
    if cap is not None and used >= cap:
        return f"at its cap ({used}/{cap})"
    return None


def choose_pool(
    session: Session,
    pools: list[CapacityPool],
    failed_over: list[dict[str, str]],
    blocks: admission.Blocks | None = None,
) -> Decision:
    """Pure decision over ``pools`` (already in priority order). A pool whose budget blocks
    new sessions (``blocks``) is waited for, like one at its cap."""
    blocked = blocks.pools if blocks is not None else {}
    tried = {entry["pool"]: entry["reason"] for entry in failed_over}
    in_use = slots_in_use([p.pk for p in pools], exclude_session=session.pk)
    decision = Decision(pool=None)
    for pool in pools:
        if session.requested_pool and pool.name != session.requested_pool:
            continue
        reason = ""
        if pool.name in tried:
            reason = f"failed: {tried[pool.name]}"
        elif not pool.enabled:
            reason = "disabled"
        else:
            ok, missing = covers(pool, session.runtime_kinds, session.requirement_kinds)
            if not ok:
                reason = "missing " + ", ".join(missing)
            elif pool.pk in blocked:
                reason = "its budget is reached"
                decision.waiting_for.append(pool.name)
                decision.budget = decision.budget or blocked[pool.pk].reason
            elif full := cap_reason(pool, in_use.get(pool.pk, 0)):
                reason = full
                decision.waiting_for.append(pool.name)
        if reason:
            decision.skipped.append({"pool": pool.name, "reason": reason})
            continue
        decision.pool = pool
        break
    return decision


def dispatch(
    session: Session,
    *,
    failure: tuple[str, str] | None = None,
    send: bool = True,
    blocks: admission.Blocks | None = None,
    pools: list[CapacityPool] | None = None,
) -> str:
    """Route a ``queued`` session (or fail over a ``provisioning`` one) to a pool.

    ``failure`` is (pool name, message) when the current pool failed permanently: that pool
    is excluded and the session gets a fresh request id for the next one (the old request
    made no sandbox, and E2B's idempotency key must not replay the failed create).
    Returns PROVISIONING (a provision job is enqueued unless ``send`` is False),
    WAITING, FAILED or NOOP (the session was no longer in a state dispatch may touch).

    ``blocks`` and ``pools`` (locked): what ``dispatch_new`` already read for a session
    saved in this transaction, which is then not read again.
    """
    with transaction.atomic(savepoint=pools is None):
        if pools is None:
            pools = lock_pools(session.org_id)
            session.refresh_from_db()
        expected = [S.PROVISIONING] if failure else [S.QUEUED]
        if session.state not in expected:
            return NOOP
        routing: dict[str, Any] = dict(session.routing or {})
        failed_over = list(routing.get("failed_over", []))
        if failure:
            failed_over.append({"pool": failure[0], "reason": failure[1][:300]})
        # Budgets that block new sessions (one query): the org's or the issue's keeps a
        # queued session waiting; a pool's is waited for like a full one.
        if failure:
            blocks = None
        elif blocks is None:
            blocks = admission.blocks(session.org_id, session.issue_id)
        if blocks is not None and blocks.scope is not None:
            routing = {"skipped": [], "waiting_for": [], "budget": blocks.scope.reason}
            if routing != session.routing:
                Session.objects.filter(pk=session.pk, state=S.QUEUED).update(routing=routing)
                session.routing = routing
                record_waiting(session, blocks.scope.reason)  # session.queued, with the reason
            return WAITING
        decision = choose_pool(session, pools, failed_over, blocks)
        new_routing: dict[str, Any] = {"skipped": decision.skipped}
        if session.requested_pool:
            new_routing["requested"] = session.requested_pool
        if failed_over:
            new_routing["failed_over"] = failed_over

        if decision.pool is not None:
            pool = decision.pool
            new_routing["chosen"] = pool.name
            values: dict[str, Any] = {
                "pool": pool,
                "provider": pool.provider,
                "routing": new_routing,
                "last_error": "",
            }
            if failure:
                # A new pool is a new request: fresh id, fresh attempt budget.
                values["request_id"] = uuid.uuid4()
                values["attempts"] = 0
            note = f"dispatched to {pool.name}"
            if failure:
                note = f"{failure[0]} failed ({failure[1][:200]}); trying {pool.name}"
            if not transition(session, S.PROVISIONING, expected=expected, note=note, **values):
                return NOOP
            if send:
                enqueue.send(enqueue.PROVISION, session.pk)
            return PROVISIONING

        if decision.waiting_for:
            new_routing["waiting_for"] = decision.waiting_for
            if decision.budget:
                new_routing["budget"] = decision.budget
            note = "waiting for a slot in " + ", ".join(decision.waiting_for)
            if failure:
                return _back_to_queue(session, new_routing, note)
            if new_routing != session.routing:
                Session.objects.filter(pk=session.pk, state=S.QUEUED).update(routing=new_routing)
                session.routing = new_routing
                record_waiting(session, note)  # session.queued, with the reason
            return WAITING

        message = decision.failure_message(session)
        if failure:
            message = f"{message} Last error on {failure[0]}: {failure[1]}"
        ok = transition(
            session,
            S.FAILED,
            expected=expected,
            note=message,
            routing=new_routing,
            last_error=message,
        )
        return FAILED if ok else NOOP


def dispatch_new(session: Session, blocks: admission.Blocks, *, created_note: str) -> str:
    """Save a new (unsaved, ``queued``) session and route it, in the caller's transaction.

    ``blocks``: what the caller already read from the budgets. When a pool takes the session
    at once, the row is inserted already ``provisioning`` and both timeline rows go in one
    INSERT (``record_created_moved``); otherwise it is inserted ``queued`` and ``dispatch``
    decides as for any queued session (wait, or fail with the reasons). Same outcomes as
    save + ``record_created`` + ``dispatch``, in fewer round trips.
    """
    pools = lock_pools(session.org_id)
    decision = choose_pool(session, pools, [], blocks) if blocks.scope is None else None
    if decision is None or decision.pool is None:
        session.save()
        record_created(session, note=created_note)
        return dispatch(session, blocks=blocks, pools=pools)
    pool = decision.pool
    routing: dict[str, Any] = {"skipped": decision.skipped}
    if session.requested_pool:
        routing["requested"] = session.requested_pool
    routing["chosen"] = pool.name
    session.state = S.PROVISIONING
    session.pool, session.provider, session.routing = pool, pool.provider, routing
    session.save()
    record_created_moved(session, created_note=created_note, note=f"dispatched to {pool.name}")
    enqueue.send(enqueue.PROVISION, session.pk)
    return PROVISIONING


def _back_to_queue(session: Session, routing: dict[str, Any], note: str) -> str:
    """Fail-over found only full pools: wait ``queued`` with a fresh request id."""
    ok = transition(
        session,
        S.QUEUED,
        expected=[S.PROVISIONING],
        note=note,
        routing=routing,
        pool=None,
        request_id=uuid.uuid4(),
        attempts=0,
    )
    return WAITING if ok else NOOP


def resume_or_wait(session: Session, *, note: str, send: bool = True) -> str:
    """A paused session: resume it if its pool has a free slot, else put it in line.

    Returns RESUMING (paused → resuming, the resume job enqueued unless ``send`` is False),
    WAITING (still ``paused`` with ``resume_requested_at`` set; a request already in line
    keeps its place) or NOOP (the session is not paused any more).
    """
    with transaction.atomic():
        pools = lock_pools(session.org_id)
        session.refresh_from_db()
        if session.state != S.PAUSED:
            return NOOP
        pool = next((p for p in pools if p.pk == session.pool_id), None)
        used = slots_in_use([pool.pk]).get(pool.pk, 0) if pool is not None else 0
        full = cap_reason(pool, used) if pool is not None else None
        if pool is None or full is None:
            if not transition(session, S.RESUMING, expected=[S.PAUSED], note=note):
                return NOOP
            if send:
                enqueue.send(enqueue.RESUME, session.pk)
            return RESUMING
        if session.resume_requested_at is not None:
            return WAITING
        now = timezone.now()
        if Session.objects.filter(
            pk=session.pk, state=S.PAUSED, resume_requested_at__isnull=True
        ).update(resume_requested_at=now):
            session.resume_requested_at = now
            # A timeline row (paused → paused) so the page shows when and why it waits.
            SessionTransition.objects.create(
                session_id=session.pk,
                from_state=S.PAUSED,
                to_state=S.PAUSED,
                note=f"{note}; waiting for a slot: {pool.name} is {full}"[:2000],
            )
        return WAITING


def _offer_slots(queued: list[Session], resumes: list[Session]) -> int:
    """Offer freed slots to one line of waiting requests, oldest request first."""
    line: list[tuple[Any, int, Session]] = [(s.created_at, s.pk, s) for s in queued]
    line += [(s.resume_requested_at, s.pk, s) for s in resumes]
    line.sort(key=lambda entry: (entry[0], entry[1]))
    started = 0
    for _, _, session in line:
        if session.state == S.QUEUED:
            started += dispatch(session) == PROVISIONING
        else:
            pool = session.pool.name if session.pool is not None else "its pool"
            started += resume_or_wait(session, note=f"a slot freed in {pool}") == RESUMING
    return started


def waiting_resumes() -> QuerySet[Session]:
    """Paused sessions whose resume waits for a slot, in request order."""
    return (
        Session.objects.filter(state=S.PAUSED, resume_requested_at__isnull=False)
        .select_related("pool")
        .order_by("resume_requested_at", "pk")
    )


def dispatch_waiting(pool: CapacityPool, limit: int = 50) -> int:
    """A slot may have freed on ``pool``: offer it to the org's queued sessions and the
    pool's waiting resumes, oldest request first.

    Returns how many started (provisioning or resuming). Safe to call any time, from anywhere.
    """
    queued = list(
        Session.objects.filter(org_id=pool.org_id, state=S.QUEUED)
        .filter(requested_pool__in=["", pool.name])
        .order_by("created_at", "pk")[:limit]
    )
    resumes = list(waiting_resumes().filter(pool=pool)[:limit])
    return _offer_slots(queued, resumes)


def dispatch_org_waiting(org_id: int, limit: int = 50) -> int:
    """Every waiting request of the org (the reconciler's retry), oldest first."""
    queued = list(
        Session.objects.filter(org_id=org_id, state=S.QUEUED).order_by("created_at", "pk")[:limit]
    )
    resumes = list(waiting_resumes().filter(org_id=org_id)[:limit])
    return _offer_slots(queued, resumes)
