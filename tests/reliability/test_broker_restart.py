"""A worker survives its broker's restart while it holds unacknowledged messages.

Celery 5.7.0 regressed here: on a lost Redis connection the consumer closed the connection a
second time after collecting it, the channel's close tried to hand its unacknowledged
messages back through a transport that no longer had a client, and the AttributeError that
followed ("'NoneType' object has no attribute 'hostname'") stopped the whole worker
(rensei/broker_patch.py is the fix). It depended on a message being unacknowledged at that
moment, so the Redis outage test failed now and then. A job waiting out its countdown is
held unacknowledged by the worker's main process for as long as it waits, which makes the
case certain.
"""

from __future__ import annotations

import time
import uuid

import pytest

from rensei.tasks import ping
from tests.emulator.helpers import wait_for
from tests.reliability.outages import OwnRedis, use_broker
from tests.reliability.stack import require_redis_broker
from tests.worker import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_keeps_running_through_a_redis_restart_with_messages_unacked() -> None:
    require_redis_broker()
    redis = OwnRedis()
    redis.start()
    try:
        with use_broker(redis.url):
            worker = WorkerProcess(concurrency=1).start()
            try:
                # Held by the worker, unacknowledged, for the next minute.
                later = ping.apply_async(args=("later",), queue=worker.queue, countdown=60)
                wait_for(lambda: f"rensei.tasks.ping[{later.id}] received" in worker.log(), 30)
                redis.stop()
                time.sleep(2)  # the worker notices the lost connection and restarts its consumer
                redis.start()
                token = uuid.uuid4().hex
                answer = ping.apply_async(args=(token,), queue=worker.queue).get(timeout=60)
                assert answer["token"] == token
                assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
                assert "Unrecoverable error" not in worker.log()
            finally:
                worker.stop()
    finally:
        redis.close()
