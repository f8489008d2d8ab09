"""Durable job intents: no session action is stranded when a whole worker dies.

A session in ``provisioning``, ``pausing``, ``resuming`` or ``terminating`` (and a command
run ``queued`` or ``running``) is itself the durable intent: the database says a job must
finish it. What the database did not say until now is *who* has that job. The broker's own
answer to a dead worker is slow by design: Redis hands an unacknowledged message back only
after its visibility timeout (an hour by default, and it must outlast the slowest job), so a
SIGKILL of a whole worker used to strand its sessions, holding pool slots, until the
reconciler's deadline minutes later.

Each intent therefore carries a claim, a ``rensei.models.Lease`` row named after it
(``intent:session:<id>:<task>``, ``intent:run:<id>``) whose holder says where the job is:

- ``sent``: a process published the job (before the broker has it, so a failed publish
  still leaves the claim); ``expires_at`` is when.
- a worker's boot id: that worker received it (``task_received``, in the worker's main
  process, also for a retry waiting out its countdown there); with ``+run`` once a pool
  child runs it. A retry waiting out its countdown in the worker is claimed from when it
  is due. Each tick the worker hands back (``sent``, long ago) the claims in its name that
  it no longer holds: Celery forgets what it had reserved when its broker connection drops
  (Redis restarted, a network cut), and a job that failed while the database was down
  could not settle its claim. The sweep then sends those again.
- ``done``: a worker ran it to the end; ``expires_at`` is when. A job that ended without
  moving the session on (a permanent terminate failure) is left to the reconciler. A job
  that failed because the database or the broker did not answer (its retry could not be
  published) is handed back like a forgotten one.

Every worker keeps a heartbeat lease (``worker:<boot id>``, renewed every ``SWEEP_EVERY``
seconds, expiring after ``HEARTBEAT_TTL``) and sweeps every ``SWEEP_EVERY`` seconds, from
its start (after a gap in its own heartbeats, such as a database outage, it judges no worker
dead for a ``HEARTBEAT_TTL``: nobody could renew theirs meanwhile): an intent older than
``GRACE`` whose claim is held by a worker without a heartbeat, or whose ``sent`` claim is
older than ``SENT_GRACE`` while the queue is empty (it is neither waiting there nor held by
anyone: the message was lost between Redis and the worker), is sent again. A command that
was running on a dead worker is not run again (it may have side effects): it ends in error,
its outcome unknown. Each re-send takes the claim with a conditional update first, so two
sweeping workers send it once.

A re-sent job meets the original message again when Redis finally restores it: every job
starts with a conditional update and does nothing for a session that moved on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import signals
from celery.utils.time import maybe_iso8601
from celery.worker import state as worker_state
from django.db import DatabaseError, IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from rensei.audit import record
from rensei.celery import app
from rensei.metrics import queue_depth
from rensei.models import Channel, Lease, Organization
from sessions import enqueue
from sessions.models import CommandRun, CommandRunState, Session, SessionState

log = logging.getLogger(__name__)
S = SessionState

SWEEP_EVERY = float(os.environ.get("RENSEI_INTENT_SWEEP_SECONDS", "2") or 2)
HEARTBEAT_TTL = timedelta(seconds=10)  # a worker silent this long is dead
OUTAGE_GAP = 2.5 * SWEEP_EVERY  # seconds between two heartbeats of ours that mean an outage
GRACE = timedelta(seconds=5)  # an intent younger than this is left to its first job
SENT_GRACE = timedelta(seconds=10)  # a published job not received by then may be lost
DONE_KEEP = timedelta(hours=1)  # settled claims older than this are deleted
HAND_BACK_AFTER = timedelta(seconds=3)  # a claim this fresh may not be in the worker's set yet

SENT = "sent"
DONE = "done"
RUNNING_MARK = "+run"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
# This worker's instance: set in the main process at import (before the pool forks), so its
# pool children claim and settle in its name. A restarted worker gets a new one.
BOOT = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

LIFECYCLE: dict[str, str] = {
    S.PROVISIONING: enqueue.PROVISION,
    S.PAUSING: enqueue.PAUSE,
    S.RESUMING: enqueue.RESUME,
    S.TERMINATING: enqueue.TERMINATE,
}
SESSION_TASKS = frozenset(LIFECYCLE.values())


def claim_name(task: str, args: Iterable[Any]) -> str | None:
    """The claim of the job ``task(args)``, or None for a task without an intent."""
    first = next(iter(args), None)
    if not isinstance(first, int):
        return None
    if task in SESSION_TASKS:
        # Per task: a stale duplicate of another of the session's jobs (a provision
        # redelivered while it is pausing) must not overwrite the claim of the one in flight.
        return f"intent:session:{first}:{task}"
    if task == enqueue.EXEC:
        return f"intent:run:{first}"
    return None


def _put(name: str, holder: str, at: datetime) -> None:
    """Upsert a claim in one statement (a publish, a receipt and a run each write one on the
    way to the job); never fails the caller (a missing claim only makes a sweep wait)."""
    try:
        # Not bulk_create(update_conflicts=True), which says the same but wraps it in an
        # atomic block: outside a transaction that is BEGIN, INSERT, COMMIT, three round trips
        # on the way from the request to the job instead of this one autocommitted statement.
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Lease._meta.db_table} (name, holder, expires_at) "
                "VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, expires_at = excluded.expires_at",
                [name, holder, connection.ops.adapt_datetimefield_value(at)],
            )
    except Exception:
        log.warning("could not record the claim %s", name, exc_info=True)
        close_old_connections()  # a connection the database dropped: a new one next time


# --- signals: publish (any process), receive (worker main process), end (pool child) ----


def on_publish(sender: str | None = None, body: Any = None, headers: Any = None, **_: Any) -> None:
    task = (headers or {}).get("task") or sender or ""
    args = body[0] if isinstance(body, list | tuple) and body else ()
    name = claim_name(task, args)
    if name:
        _put(name, SENT, timezone.now())


def on_received(request: Any = None, **_: Any) -> None:
    name = claim_name(getattr(request, "name", "") or "", getattr(request, "args", ()) or ())
    if name:
        now = timezone.now()
        due = _due(getattr(request, "eta", None))
        _put(name, BOOT, max(now, due) if due else now)


def _due(eta: Any) -> datetime | None:
    try:
        when = maybe_iso8601(eta) if eta else None
    except (TypeError, ValueError):
        return None
    if when is not None and timezone.is_naive(when):
        when = timezone.make_aware(when, UTC)
    return when


def _in_worker(task: Any) -> str | None:
    if task is None or getattr(task.request, "is_eager", False):
        return None
    return claim_name(task.name, getattr(task.request, "args", None) or ())


def _settle(name: str, holder: str, at: datetime) -> None:
    try:
        Lease.objects.filter(name=name, holder__in=[BOOT, BOOT + RUNNING_MARK]).update(
            holder=holder, expires_at=at
        )
    except Exception:
        log.warning("could not settle the claim %s", name, exc_info=True)
        close_old_connections()


def on_prerun(task: Any = None, **_: Any) -> None:
    name = _in_worker(task)
    if name:
        _put(name, BOOT + RUNNING_MARK, timezone.now())


def on_postrun(task: Any = None, state: str | None = None, **_: Any) -> None:
    name = _in_worker(task)
    # A retry is published again and received again: that claims it. A failure was settled
    # by on_failure.
    if name and state == "SUCCESS":
        _settle(name, DONE, timezone.now())


def on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    name = _in_worker(sender)
    if name:
        # An outage (the retry could not be published): nobody has the job; send it again.
        lost = isinstance(exception, OperationalError | DatabaseError)
        _settle(name, SENT if lost else DONE, LONG_AGO if lost else timezone.now())


def on_worker_ready(**_: Any) -> None:
    threading.Thread(target=_keep_sweeping, name="intents-sweep", daemon=True).start()


def connect() -> None:
    """Wire the signals (``AgentSessionsConfig.ready``: every process publishes)."""
    signals.before_task_publish.connect(on_publish, weak=False)
    signals.task_received.connect(on_received, weak=False)
    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    signals.task_failure.connect(on_failure, weak=False)
    signals.worker_ready.connect(on_worker_ready, weak=False)


# --- the sweep ---------------------------------------------------------------------------


def heartbeat() -> None:
    _put(f"worker:{BOOT}", BOOT, timezone.now() + HEARTBEAT_TTL)


def held_here() -> set[str]:
    """Claim names of the jobs this worker holds: reserved (received, running) ones."""
    for _ in range(3):
        try:
            requests = list(worker_state.reserved_requests) + list(worker_state.active_requests)
            break
        except RuntimeError:  # the set changed while copied: copy again
            continue
    else:
        return set()
    names = (claim_name(r.name or "", r.args or ()) for r in requests)
    return {name for name in names if name}


def hand_back_unheld(held: set[str], now: datetime | None = None) -> int:
    """Claims in this worker's name for jobs it no longer holds go back to the sweep."""
    cutoff = (now or timezone.now()) - HAND_BACK_AFTER
    mine = Lease.objects.filter(
        name__startswith="intent:", holder__in=[BOOT, BOOT + RUNNING_MARK], expires_at__lt=cutoff
    ).exclude(name__in=held)
    handed = mine.update(holder=SENT, expires_at=LONG_AGO)
    if handed:
        log.info("%s claims handed back: this worker no longer holds their jobs", handed)
    return handed


class Heartbeats:
    """Whether this worker's sweep may judge other workers by their heartbeats.

    Not until ``HEARTBEAT_TTL`` after a gap in its own (a database outage, or this process
    starved): no worker could renew its heartbeat meanwhile, so each must first have had a
    full ``HEARTBEAT_TTL`` to renew it again, or a live worker's running command would be
    ended as lost."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.trusted_from = 0.0

    def beat(self, at: float) -> bool:
        """Record a heartbeat written at ``at`` (monotonic seconds); True if trusted."""
        if self.last is not None and at - self.last > OUTAGE_GAP:
            self.trusted_from = at + HEARTBEAT_TTL.total_seconds()
        self.last = at
        return at >= self.trusted_from


def _keep_sweeping() -> None:
    stop = threading.Event()
    beats = Heartbeats()
    while True:
        close_old_connections()
        try:
            heartbeat()
            trusted = beats.beat(time.monotonic())
            hand_back_unheld(held_here())
            sweep(trust_heartbeats=trusted)
        except Exception:  # a database or broker outage: try again at the next tick
            log.warning("intent sweep failed", exc_info=True)
        if stop.wait(SWEEP_EVERY):
            return


@dataclass(frozen=True)
class Claim:
    name: str
    holder: str
    at: datetime


def _claims(names: list[str]) -> dict[str, Claim]:
    rows = Lease.objects.filter(name__in=names).values_list("name", "holder", "expires_at")
    return {n: Claim(n, h, at) for n, h, at in rows}


def _live_workers(now: datetime) -> set[str]:
    rows = Lease.objects.filter(name__startswith="worker:", expires_at__gt=now)
    return set(rows.values_list("holder", flat=True))


def _alive(holder: str, live: set[str] | None) -> bool:
    """Whether the worker holding a claim is alive (``live`` None: every worker is taken to
    be, as right after an outage, when no heartbeat could be renewed)."""
    return live is None or holder.removesuffix(RUNNING_MARK) in live


def _verdict(
    claim: Claim | None, since: datetime, now: datetime, live: set[str] | None, queue_empty: bool
) -> str:
    """ "leave", "resend" (nobody has the job), or "dead" (a dead worker had it)."""
    if claim is None or (claim.holder in (SENT, DONE) and claim.at < since):
        return "resend" if queue_empty else "leave"  # never claimed since the state began
    if claim.holder == DONE:
        return "leave"  # it ran; what it left undone is the reconciler's
    if claim.holder == SENT:
        return "resend" if queue_empty and claim.at < now - SENT_GRACE else "leave"
    return "leave" if _alive(claim.holder, live) else "dead"


def _take(claim: Claim | None, name: str, now: datetime) -> bool:
    """Take the claim for a re-send, exactly once across sweepers."""
    if claim is None:
        try:
            with transaction.atomic():
                Lease.objects.create(name=name, holder=SENT, expires_at=now)
            return True
        except IntegrityError:
            return False
    taken = Lease.objects.filter(name=name, holder=claim.holder, expires_at=claim.at).update(
        holder=SENT, expires_at=now
    )
    return bool(taken)


def sweep(now: datetime | None = None, trust_heartbeats: bool = True) -> dict[str, int]:
    """One pass: re-send what nobody holds; end commands a dead worker was running.
    ``trust_heartbeats`` False (just after an outage): no worker is judged dead."""
    now = now or timezone.now()
    live = _live_workers(now) if trust_heartbeats else None
    depth = queue_depth()
    queue_empty = depth == 0  # NaN (broker down) is not empty: nothing can be sent anyway
    out = {"resent": 0, "commands_lost": 0}
    # Every open intent, however young: their claims are never cleaned up below (a claim
    # handed back is dated long ago, and another worker's clean-up must not delete it before
    # this sweep decides on it). Only those older than GRACE are decided on.
    open_sessions = list(
        Session.objects.filter(state__in=list(LIFECYCLE))
        .values_list("pk", "org_id", "state", "state_changed_at")
        .order_by("pk")
    )
    open_runs = list(
        CommandRun.objects.filter(state__in=[CommandRunState.QUEUED, CommandRunState.RUNNING])
        .values_list("pk", "session__org_id", "state", "created_at")
        .order_by("pk")
    )
    open_names = {f"intent:session:{pk}:{LIFECYCLE[state]}" for pk, _, state, _ in open_sessions}
    open_names |= {f"intent:run:{pk}" for pk, *_ in open_runs}
    sessions = [row for row in open_sessions if row[3] < now - GRACE]
    runs = [row for row in open_runs if row[3] < now - GRACE]
    claims = _claims(
        [f"intent:session:{pk}:{LIFECYCLE[state]}" for pk, _, state, _ in sessions]
        + [f"intent:run:{pk}" for pk, *_ in runs]
    )
    for pk, org_id, state, since in sessions:
        name = f"intent:session:{pk}:{LIFECYCLE[state]}"
        claim = claims.get(name)
        verdict = _verdict(claim, since, now, live, queue_empty)
        if verdict != "leave" and _take(claim, name, now):
            _resend(LIFECYCLE[state], pk, org_id, state, claim)
            out["resent"] += 1
    for pk, org_id, state, since in runs:
        name = f"intent:run:{pk}"
        claim = claims.get(name)
        verdict = _verdict(claim, since, now, live, queue_empty)
        if state == CommandRunState.RUNNING:
            # Never run twice (side effects): ended once no live worker holds its job (the
            # worker running it died, or its job was handed back and is not running).
            if _run_orphaned(claim, now, live) and _end_lost_command(pk, claim, now):
                out["commands_lost"] += 1
        elif verdict != "leave" and _take(claim, name, now):
            _resend(enqueue.EXEC, pk, org_id, state, claim)
            out["resent"] += 1
    if out["resent"] or out["commands_lost"]:
        log.info("intent sweep: %s", out)
    Lease.objects.filter(
        name__startswith="intent:", holder__in=[SENT, DONE], expires_at__lt=now - DONE_KEEP
    ).exclude(name__in=sorted(open_names)).delete()
    Lease.objects.filter(name__startswith="worker:", expires_at__lt=now - DONE_KEEP).delete()
    return out


def _resend(task: str, pk: int, org_id: int, state: str, claim: Claim | None) -> None:
    app.signature(task, args=(pk,)).delay()
    record(
        org=Organization.objects.filter(pk=org_id).first(),
        action="session.job_resent" if task != enqueue.EXEC else "command.job_resent",
        target=f"{'session' if task != enqueue.EXEC else 'command run'} {pk}",
        channel=Channel.JOB,
        detail={"state": state, "claim": _describe(claim)},
    )


def _describe(claim: Claim | None) -> str:
    if claim is None:
        return "never received"
    if claim.holder in (SENT, DONE):
        return f"{claim.holder} at {claim.at:%H:%M:%S}, never received since"
    return "held by a worker that stopped"


def _run_orphaned(claim: Claim | None, now: datetime, live: set[str] | None) -> bool:
    if claim is None:
        return False  # no claim at all: left to the reconciler's command deadline
    if claim.holder not in (SENT, DONE) and _alive(claim.holder, live):
        return False
    if claim.holder in (SENT, DONE):
        return claim.at < now - SENT_GRACE  # handed back and not received again since
    return True  # held by a dead worker


def _end_lost_command(pk: int, claim: Claim | None, now: datetime) -> bool:
    if claim is None or not _take(claim, f"intent:run:{pk}", now):
        return False
    return bool(
        CommandRun.objects.filter(pk=pk, state=CommandRunState.RUNNING).update(
            state=CommandRunState.ERROR,
            error="The worker running the command was lost; its outcome is unknown.",
            finished_at=now,
            env_encrypted="",
        )
    )
