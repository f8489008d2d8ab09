"""Servers a test can take down, and the storm it takes them down in.

- ``OwnRedis``: a ``redis-server`` of the test's own on a free loopback port, without
  persistence, so a restart loses every message (the queue and the unacknowledged set).
- ``OwnPostgres``: a PostgreSQL cluster of the test's own (``initdb`` in a temp dir, a free
  port), run as the ``postgres`` system user when the test runs as root (PostgreSQL refuses
  root), stopped with ``pg_ctl stop -m immediate`` (a crash) and started again.
- ``TcpProxy``: a loopback TCP proxy in front of the emulator; ``cut()`` closes the
  listener and every connection (E2B unreachable: connections refused), ``restore()``
  listens again on the same port.
- ``use_broker(url)``: this process's Celery app and settings on another broker.
- ``Storm``: sessions driven create → pause → resume → command → terminate, a few in flight
  at once, through the service API, recording when each action was asked for.

The machine's shared PostgreSQL and Redis are never touched: other test runs use them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError, close_old_connections
from django.test import override_settings
from kombu.exceptions import OperationalError as BrokerDown

from pools.models import CapacityPool
from rensei.celery import app
from rensei.models import Organization
from sessions import services
from sessions.models import LIVE_STATES, CommandRun, CommandRunState, Session, SessionState

S = SessionState
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="outage-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port)

    def stop(self) -> None:
        """SIGKILL: whatever it held is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnPostgres:
    """A throwaway cluster; ``url(db)`` for a database in it (trust auth, loopback only)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="outage-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            ids = pwd.getpwnam("postgres")
            os.chown(self.dir, ids.pw_uid, ids.pw_gid)

    def url(self, db: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{db}"

    def _run(self, *cmd: str) -> None:
        argv = [str(PG_BIN / cmd[0]), *cmd[1:]]
        if os.geteuid() == 0:
            argv = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]
        subprocess.run(argv, check=True, capture_output=True, timeout=120, cwd="/")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off -k {self.dir}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "pg.log"), "-o", options,
                  "-w", "start")  # fmt: skip

    def stop(self) -> None:
        """An immediate stop: every connection dropped at once, as a crash would."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        with suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def available() -> bool:
        if not (PG_BIN / "initdb").exists():
            return False
        if os.geteuid() != 0:
            return True
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return True


class TcpProxy:
    def __init__(self, target: str) -> None:
        host, _, port = target.rsplit("/", 1)[-1].partition(":")
        self.target = (host or "127.0.0.1", int(port))
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._open -= {src, dst}

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._open)
        for sock in conns:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.start()


def _reset_app(broker: str, backend: str) -> None:
    # Celery reads these two from the environment first.
    os.environ["CELERY_BROKER_URL"], os.environ["CELERY_RESULT_BACKEND"] = broker, backend
    app.conf.update(broker_url=broker, result_backend=backend)
    # Dropped, not closed: kombu keeps one pool per broker URL for the whole process, and the
    # app takes the same one back when it returns to the shared broker.
    app._pool = None  # type: ignore[attr-defined]
    app.amqp._producer_pool = None  # type: ignore[attr-defined]
    app._backend_cache = None  # type: ignore[attr-defined]
    with suppress(AttributeError):
        del app._local.backend  # type: ignore[attr-defined]


@contextmanager
def use_broker(url: str) -> Iterator[None]:
    """This process (and the workers it starts, through settings) on broker ``url``."""
    saved = (app.conf.broker_url, app.conf.result_backend)
    env = {name: os.environ.get(name) for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
    with override_settings(CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url):
        _reset_app(url, url)
        try:
            yield
        finally:
            _reset_app(*saved)
            for name, value in env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


# --- the storm ----------------------------------------------------------------------------

WAITING = {S.QUEUED, S.PROVISIONING, S.PAUSING, S.RESUMING, S.TERMINATING}


@dataclass
class Storm:
    """Sessions through create → pause → resume → command → terminate, ``active`` at once."""

    org: Organization
    pool: CapacityPool
    active: int = 5
    prefix: str = "OUT"
    sessions: list[Session] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # calls the outage made fail
    resumed: set[int] = field(default_factory=set)
    commanded: set[int] = field(default_factory=set)
    creating: bool = True

    def step(self) -> None:
        """One round: each settled session its next action; new ones up to ``active``."""
        try:
            self._step()
        except (DatabaseError, BrokerDown) as exc:
            self.refused[type(exc).__name__] += 1
            close_old_connections()  # a connection the database dropped: a new one next round

    def _step(self) -> None:
        live = 0
        for session in self.sessions:
            session.refresh_from_db()
            if session.state not in LIVE_STATES:
                continue
            live += 1
            if session.state in WAITING or self._command_pending(session):
                continue
            self._next(session)
        if self.creating and live < self.active:
            self.sessions.append(
                services.create_session(
                    self.org,
                    issue_key=f"{self.prefix}-{len(self.sessions) + 1}",
                    runtime_kinds=["npm"],
                    requirement_kinds=["git"],
                    pool_name=self.pool.name,
                )
            )
            self.actions["create"] += 1

    def _command_pending(self, session: Session) -> bool:
        return CommandRun.objects.filter(
            session=session, state__in=[CommandRunState.QUEUED, CommandRunState.RUNNING]
        ).exists()

    def _next(self, session: Session) -> None:
        if session.state == S.PAUSED:
            if services.request_resume(session):
                self.actions["resume"] += 1
                self.resumed.add(session.pk)
            return
        if session.state != S.RUNNING:
            return
        if session.pk not in self.resumed:
            if services.request_pause(session):
                self.actions["pause"] += 1
        elif session.pk not in self.commanded:
            services.run_command(session, command="echo storm", timeout=30)
            self.commanded.add(session.pk)
            self.actions["exec"] += 1
        elif services.request_terminate(session):
            self.actions["terminate"] += 1

    def finish(self) -> bool:
        """Stop creating; drive what is running or paused to terminated. True when all ended."""
        self.creating = False
        self.step()
        try:
            return self._finish()
        except DatabaseError:
            close_old_connections()
            return False

    def _finish(self) -> bool:
        for session in self.sessions:
            if session.state in (S.RUNNING, S.PAUSED) and not self._command_pending(session):
                try:
                    if services.request_terminate(session):
                        self.actions["terminate"] += 1
                except (DatabaseError, BrokerDown):
                    pass
        return all(s.state not in LIVE_STATES for s in self.sessions) and not (
            CommandRun.objects.filter(
                session__in=self.sessions,
                state__in=[CommandRunState.QUEUED, CommandRunState.RUNNING],
            ).exists()
        )

    def outcome(self) -> dict[str, Any]:
        for session in self.sessions:
            session.refresh_from_db()
        runs = CommandRun.objects.filter(session__in=self.sessions)
        return {
            "sessions driven": len(self.sessions),
            "actions requested": dict(self.actions),
            "final session states": dict(Counter(s.state for s in self.sessions)),
            "commands": dict(Counter(runs.values_list("state", flat=True))),
            "calls the outage refused (the storm's own, retried next round)": dict(self.refused),
        }
