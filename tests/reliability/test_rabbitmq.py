"""RabbitMQ as the broker, as the README's production notes recommend it.

With ``CELERY_BROKER_URL=amqp://…`` the settings make every queue a quorum queue on a topic
exchange, so countdown retries use RabbitMQ's native delayed delivery. Here a real worker
and a publisher in a process of its own (``manage.py shell``, the product's own enqueue
path) run on RabbitMQ: a provision whose first create fails with a 500 (the job retries
with a countdown) still reaches running with one sandbox; the worker is then SIGKILLed
in the middle of a provision, and a new worker takes the job back at once, without any
visibility timeout, and finishes it with one sandbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from rensei.crypto import encrypt
from rensei.models import Credential, Organization
from sessions.models import Session, SessionState
from tests.processes import wait_for
from tests.services import port_open
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool
from tests.worker import WorkerProcess, database_url, emulator_with_worker

S = SessionState
pytestmark = pytest.mark.django_db(transaction=True)
KEY = "e2b_rabbitmq_key"


@pytest.fixture
def amqp_url() -> str:
    from tests.services import IN_CI

    url = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    if not port_open("127.0.0.1", 5672):
        reason = f"needs RabbitMQ at {url}"
        if IN_CI:
            pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
        pytest.skip(reason)
    return url


def _broker_env(amqp: str) -> dict[str, str]:
    return {"CELERY_BROKER_URL": amqp, "CELERY_RESULT_BACKEND": "rpc://"}


def _drop_queue(amqp: str, queue: str) -> None:
    from kombu import Connection

    with Connection(amqp) as conn:
        channel: Any = conn.channel()
        channel.queue_delete(queue)


def _publish(org: Organization, queue: str, amqp: str, emu_url: str, key: str) -> int:
    """A session created in another process on RabbitMQ settings: its provision job goes
    out through the product's own publish path. The session's id is returned."""
    code = (
        "from rensei.models import Organization; from sessions import services; "
        f"s = services.create_session(Organization.objects.get(pk={org.pk}), "
        f"issue_key={key!r}, runtime_kinds=[], requirement_kinds=[]); print('SESSION', s.pk)"
    )
    env = {
        **os.environ,
        **_broker_env(amqp),
        "DATABASE_URL": database_url(connection.settings_dict),  # type: ignore[arg-type]
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "E2B_API_URL": emu_url,
        "E2B_SANDBOX_URL": emu_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return int(out.stdout.split("SESSION")[-1].split()[0])


def _state(pk: int) -> str:
    return Session.objects.get(pk=pk).state


def _sandboxes_for(emu: Any, pk: int) -> list[str]:
    return [
        sid
        for sid in emu.emulator.sandbox_ids()
        if emu.emulator.sandboxes[sid].metadata.get("rensei_session") == str(pk)
    ]


def _queue_is_quorum(amqp: str, queue: str) -> bool:
    """RabbitMQ accepts a second declaration only with the same arguments: declaring the
    worker's queue again as a durable quorum queue succeeds only if it is one."""
    from amqp.exceptions import PreconditionFailed
    from kombu import Connection

    with Connection(amqp) as conn:
        channel: Any = conn.channel()
        try:
            channel.queue_declare(
                queue, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"}
            )
        except PreconditionFailed:
            return False
        return True


def test_provisions_retry_and_survive_a_killed_worker_on_rabbitmq(
    org_a: Organization, django_db_blocker: Any, amqp_url: str
) -> None:
    ensure_rate_cards()
    make_pool(org_a, "e2b-1", provider="e2b", order=1)
    Credential.objects.create(
        org=org_a, provider="e2b", secret_encrypted=encrypt(KEY), last_four=KEY[-4:]
    )
    with emulator_with_worker(django_db_blocker, **_broker_env(amqp_url)) as (emu, worker):
        again = WorkerProcess(env=worker.extra_env)
        again.queue = worker.queue
        try:
            assert _queue_is_quorum(amqp_url, worker.queue)

            # A transient create failure: the job retries after a countdown, which RabbitMQ
            # holds back through its delayed-delivery exchanges.
            emu.emulator.fail_next("create", count=1, status=500)
            first = _publish(org_a, worker.queue, amqp_url, emu.url, "RMQ-1")
            assert wait_for(lambda: _state(first) == S.RUNNING, 90), worker.log()[-3000:]
            assert len(_sandboxes_for(emu, first)) == 1
            assert len(emu.emulator.calls_to("create")) == 2  # the failed one, the retry
            # Celery warns when a countdown would sit in the worker instead (a direct
            # exchange in front of a quorum queue).
            assert "not supported with native delayed delivery" not in worker.log()

            # The worker killed while its create is in flight: RabbitMQ hands the job to
            # the next worker as soon as the dead one's connection is gone (with Redis it
            # would wait out the visibility timeout, an hour).
            emu.emulator.faults.set_latency(3000, "create")
            second = _publish(org_a, worker.queue, amqp_url, emu.url, "RMQ-2")
            assert wait_for(lambda: len(emu.emulator.calls_to("create")) == 3, 30)
            worker.kill()
            emu.emulator.faults.set_latency(0, "create")
            with django_db_blocker.unblock():
                again.start()
            assert wait_for(lambda: _state(second) == S.RUNNING, 60), again.log()[-3000:]
            assert len(_sandboxes_for(emu, second)) == 1
        finally:
            again.stop()
            worker.stop()
            _drop_queue(amqp_url, worker.queue)
