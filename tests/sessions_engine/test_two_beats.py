"""Two `celery beat` processes started by mistake: the reconcile job is sent by both, and
every decision is still taken once (one orphan kill, one pause recorded)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from rensei.models import AuditEvent, Organization
from sessions import services
from sessions.models import Session, SessionState, SessionTransition
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool
from tests.worker import WorkerProcess, database_url, emulator_with_worker

S = SessionState
API_KEY = "e2b_two_beats_key"
WAIT = 60  # seconds: a bound for polling, not a timing assertion
SENT = re.compile(r"Sending due task reconcile \(sessions\.tasks\.reconcile_all\)")

pytestmark = pytest.mark.django_db(transaction=True)


def start_beat(worker: WorkerProcess, folder: Path, n: int) -> subprocess.Popen[bytes]:
    env = os.environ.copy()
    env.update(
        {
            "DATABASE_URL": database_url(connection.settings_dict),  # type: ignore[arg-type]
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_TASK_DEFAULT_QUEUE": worker.queue,
            "RENSEI_RECONCILE_EVERY": "1",
        }
    )
    log = (folder / f"beat-{n}.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "rensei",
            "beat",
            "--loglevel",
            "DEBUG",
            "--schedule",
            str(folder / f"schedule-{n}"),
            "--pidfile",
            "",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=settings.BASE_DIR,
        start_new_session=True,
    )


@pytest.fixture
def stack(django_db_blocker: Any) -> Iterator[tuple[Any, WorkerProcess]]:
    with emulator_with_worker(django_db_blocker, api_key=API_KEY) as (emu, worker):
        yield emu, worker


def test_two_beats_send_the_reconciler_twice_and_it_acts_once(
    stack: tuple[Any, WorkerProcess], org_a: Organization
) -> None:
    from e2b import Sandbox  # the SDK's import is slow; only this test needs it

    emu, worker = stack
    ensure_rate_cards()
    make_pool(org_a, "demo-e2b", provider="e2b", config={"templateId": "donmai-worker"})
    session = services.create_session(
        org_a, issue_key="ENG-142", runtime_kinds=["npm"], requirement_kinds=["git"]
    )
    wait_for(lambda: Session.objects.get(pk=session.pk).state == S.RUNNING, timeout=WAIT)
    session.refresh_from_db()
    orphan = Sandbox.create(
        template="base",
        metadata={"rensei_org": org_a.slug, "rensei_session": "424242"},
        **emu.sdk_kwargs,
    )
    emu.emulator.pause_sandbox(session.sandbox_id)  # paused outside the platform

    folder = Path(tempfile.mkdtemp(prefix="two-beats-"))
    beats = [start_beat(worker, folder, n) for n in (1, 2)]
    try:

        def both_sent_twice() -> bool:
            return all(
                len(SENT.findall((folder / f"beat-{n}.log").read_text(errors="replace"))) >= 2
                for n in (1, 2)
            )

        wait_for(both_sent_twice, timeout=WAIT, interval=0.2)
        wait_for(lambda: orphan.sandbox_id not in emu.emulator.sandbox_ids(), timeout=WAIT)
        wait_for(lambda: Session.objects.get(pk=session.pk).state == S.PAUSED, timeout=WAIT)
        # Let both beats' later passes run over the settled world before counting.
        passes = len(re.findall(r"reconcile_org\[[^\]]+\] succeeded", worker.log()))
        wait_for(
            lambda: (
                len(re.findall(r"reconcile_org\[[^\]]+\] succeeded", worker.log())) >= passes + 4
            ),
            timeout=WAIT,
            interval=0.2,
        )
    finally:
        for beat in beats:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(timeout=15)

    assert AuditEvent.objects.filter(action="sandbox.orphan_killed").count() == 1
    to_paused = SessionTransition.objects.filter(session=session, to_state=S.PAUSED)
    assert to_paused.count() == 1
