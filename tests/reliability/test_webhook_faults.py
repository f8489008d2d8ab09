"""Webhook delivery under faults: the delivery worker (a real Celery worker running the
drain job) SIGKILLed 50 times at random moments, while the receiver (a real HTTP server on
loopback) answers 500 or hangs past the sender's timeout at random.

What must hold: every event is delivered (answered 2xx) at least once, none is lost, and
after dedupe by id each is processed once; per session the first copies arrive in sequence
order.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest
from django.utils import timezone

from events import endpoints
from events.models import Delivery, DeliveryState, Event, WebhookEndpoint
from events.outbox import emit
from events.tasks import DRAIN
from events.types import POOL_HEALTH_CHANGED, SESSION_RUNNING
from rensei.celery import app
from rensei.models import Channel, Organization
from tests.emulator.helpers import wait_for
from tests.events.receiver import receiver
from tests.worker import WorkerProcess

# 50 in make reliability; CI runs a shorter storm (RELIABILITY_WEBHOOK_KILLS in .ci/run).
KILLS = int(os.environ.get("RELIABILITY_WEBHOOK_KILLS", "50"))
SESSIONS = 12
EVENTS_PER_SESSION = 10  # before the first kill; 4 more between kills, round the sessions
MORE_PER_LIFE = 4
LOOSE = 20  # events without a session
SEED = 17
WORKER_ENV = {
    "RENSEI_WEBHOOK_TIMEOUT_SECONDS": "1",
    "RENSEI_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "RENSEI_WEBHOOK_CLAIM_SECONDS": "3",
    "RENSEI_WEBHOOK_DISABLE_AFTER": "1000000",
}

pytestmark = pytest.mark.django_db(transaction=True)


def _stuck_summary(total: int) -> str:
    """What was left when the deliveries did not settle: the failure message says why."""
    now = timezone.now()
    lines = [
        f"events {Event.objects.count()} (unpublished "
        f"{Event.objects.filter(position__isnull=True).count()}), deliveries "
        f"{Delivery.objects.count()} of {total}, endpoint enabled "
        f"{list(WebhookEndpoint.objects.values_list('enabled', flat=True))}"
    ]
    for d in Delivery.objects.exclude(state=DeliveryState.DELIVERED).order_by("id")[:20]:
        lines.append(
            f"delivery {d.pk} session {d.session_id} seq {d.sequence} state {d.state} "
            f"attempts {d.attempts} next in {(d.next_attempt_at - now).total_seconds():.1f}s "
            f"claimed {d.claimed_until and (d.claimed_until - now).total_seconds()}"
        )
    return "\n".join(lines)


def test_every_event_arrives_in_order_through_kills_500s_and_hangs(  # type: ignore[no-untyped-def]
    org_a: Organization, figure
) -> None:
    fig = figure("webhook_faults")
    rng = random.Random(SEED)
    answers: Counter[str] = Counter()

    def behaviour(n: int) -> int | str:
        roll = rng.random()
        answer: int | str = 500 if roll < 0.25 else ("hang" if roll < 0.32 else 200)
        answers[str(answer)] += 1
        return answer

    with receiver(behaviour, hang=1.5) as rx:
        _, secret = endpoints.create_endpoint(org_a, url=rx.url, channel=Channel.WEB)
        ids_by_session: dict[int, int] = {}
        for n in range(EVENTS_PER_SESSION):
            for session_id in range(1, SESSIONS + 1):
                emit(org_a.pk, SESSION_RUNNING, {"n": n}, session_id=1000 + session_id)
                ids_by_session[1000 + session_id] = n + 1
        for _ in range(LOOSE):
            emit(org_a.pk, POOL_HEALTH_CHANGED, {})
        total = SESSIONS * EVENTS_PER_SESSION + LOOSE

        kills = 0
        turn = 0
        worker = WorkerProcess(env=WORKER_ENV, concurrency=1)
        try:
            while kills < KILLS:
                for _ in range(MORE_PER_LIFE):  # new events keep coming while it dies
                    session_id = 1001 + turn % SESSIONS
                    ids_by_session[session_id] += 1
                    emit(org_a.pk, SESSION_RUNNING, {"turn": turn}, session_id=session_id)
                    turn += 1
                    total += 1
                worker.start()
                for _ in range(3):
                    app.send_task(DRAIN, queue=worker.queue)
                time.sleep(rng.uniform(0.1, 1.2))
                worker.kill()
                kills += 1
            worker.start()

            def all_delivered() -> bool:
                app.send_task(DRAIN, queue=worker.queue)
                pending = Delivery.objects.exclude(state=DeliveryState.DELIVERED).count()
                return pending == 0 and Delivery.objects.count() == total

            try:
                wait_for(all_delivered, timeout=300, interval=1.0)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_stuck_summary(total)}") from None
        finally:
            worker.stop()
        received = list(rx.received)

    # Dedupe by id, keeping each event's first copy, as a receiver would.
    assert all(r.signed_by(secret) for r in received)
    copies = Counter(r.json["id"] for r in received)
    first_seen: dict[str, dict[str, object]] = {}
    for r in received:
        first_seen.setdefault(r.json["id"], r.json)
    processed = list(first_seen)
    assert len(processed) == total, f"{total - len(processed)} events never arrived"
    by_session: dict[int, list[int]] = {}
    for event_id in processed:
        event = first_seen[event_id]
        if event["session_id"] is not None:
            by_session.setdefault(int(str(event["session_id"])), []).append(
                int(str(event["sequence"]))
            )
    out_of_order = [s for s, seqs in by_session.items() if seqs != sorted(seqs)]
    missing = [s for s, seqs in by_session.items() if seqs != list(range(1, ids_by_session[s] + 1))]
    assert not out_of_order and not missing, (out_of_order, missing)
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == total

    fig.add(kills)
    fig.unit = "worker kills"
    fig.details = {
        "events": total,
        "sessions": SESSIONS,
        "requests the receiver saw": len(received),
        "answers": dict(answers),
        "events received more than once": sum(1 for n in copies.values() if n > 1),
        "lost": total - len(processed),
        "out of order (after dedupe)": len(out_of_order),
    }
