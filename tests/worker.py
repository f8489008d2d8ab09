"""A real Celery worker process for integration tests.

The worker is a separate process (``celery -A rensei worker``, prefork pool) started with
the test database's URL and a queue of its own, so it sees what the test commits and nothing
from any other run. Tests that use it must commit their data: mark them
``@pytest.mark.django_db(transaction=True)``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from rensei.celery import app

ARTIFACTS = Path(settings.BASE_DIR) / "artifacts" / "logs"


def database_url(settings_dict: dict[str, Any]) -> str:
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    if engine.endswith("postgresql"):
        user = settings_dict.get("USER") or ""
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"
    raise RuntimeError(f"no URL form for database engine {engine}")


def set_default_queue(name: str) -> None:
    """Where this process publishes jobs sent without a queue. Celery reads the setting by
    its Django name first (the app is configured from settings with the CELERY namespace),
    so a change under the short name alone would not take."""
    app.conf["CELERY_TASK_DEFAULT_QUEUE"] = name


class WorkerProcess:
    """One `celery worker` subprocess on its own queue."""

    def __init__(self, *, env: dict[str, str] | None = None, concurrency: int = 2) -> None:
        self.queue = f"test-{uuid.uuid4().hex[:10]}"
        self.extra_env = env or {}
        self.concurrency = concurrency
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"worker-{self.queue}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._previous_queue = app.conf.task_default_queue

    def start(self, wait: bool = True) -> WorkerProcess:
        env = os.environ.copy()
        env.update(
            {
                "DATABASE_URL": database_url(connection.settings_dict),  # type: ignore[arg-type]
                "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
                "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
                "CELERY_TASK_DEFAULT_QUEUE": self.queue,
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        env.update(self.extra_env)
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "rensei",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(self.concurrency),
            "--queues",
            self.queue,
            "--hostname",
            f"{self.queue}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )
        # The test process publishes to the worker's queue.
        set_default_queue(self.queue)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        """A ping through the broker; a worker on a broker of its own (``CELERY_BROKER_URL``
        in ``env``, not this process's) is ready when its log says so."""
        from rensei.tasks import ping

        broker = self.extra_env.get("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)
        if broker != settings.CELERY_BROKER_URL:
            deadline = time.monotonic() + timeout
            while " ready." not in self.log():
                assert time.monotonic() < deadline, self.log()[-3000:]
                assert self.proc is not None and self.proc.poll() is None, self.log()[-3000:]
                time.sleep(0.1)
            return
        token = uuid.uuid4().hex
        result = ping.apply_async(args=(token,), queue=self.queue)
        answer = result.get(timeout=timeout)
        assert answer["token"] == token

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and children): a crash, not a shutdown."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        set_default_queue(self._previous_queue)


@pytest.fixture(scope="session")
def live_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[WorkerProcess]:
    """A session-wide worker on the test database and the configured broker."""
    worker = WorkerProcess()
    with django_db_blocker.unblock():
        worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@contextmanager
def loopback_no_proxy() -> Iterator[None]:
    """NO_PROXY for loopback while the block runs: the E2B SDK honours HTTP(S)_PROXY even there."""
    saved = {name: os.environ.get(name) for name in ("NO_PROXY", "no_proxy")}
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def emulator_with_worker(
    django_db_blocker: Any, *, api_key: str = "", **worker_env: str
) -> Iterator[tuple[RunningEmulator, WorkerProcess]]:
    """The local E2B emulator, a worker pointed at it, and this process's settings too.

    With ``api_key`` the emulator accepts only that key; without, any key (as ``make run``).
    """
    knobs: dict[str, Any] = {"api_keys": [api_key]} if api_key else {}
    with loopback_no_proxy(), running_emulator(**knobs) as emu:
        urls = {"E2B_API_URL": emu.url, "E2B_SANDBOX_URL": emu.url}
        worker = WorkerProcess(env={**urls, "E2B_API_KEY": api_key, **worker_env})
        with override_settings(**urls, E2B_API_KEY=api_key):
            try:
                with django_db_blocker.unblock():
                    worker.start()
                yield emu, worker
            finally:
                worker.stop()
