"""What every benchmark shares: figures (min/median/max over runs), the machine description,
and the processes a benchmark starts (gunicorn, Celery workers, the E2B emulator).

Every process is started in a session of its own and stopped by its process group id, so
stopping one never touches anything this run did not start.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results" / "logs"


@dataclass
class Context:
    """What the benchmarks get: the child-process environment, the database, the web."""

    args: Any
    env: dict[str, str]
    dsn: str  # libpq conninfo of the benchmark database (raw SQL, polling)
    queue: str
    web_url: str = ""
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the seeded org for B1 / B4
    deadline: float = float("inf")  # time.monotonic() by which the whole run should end

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


# --- figures -----------------------------------------------------------------------------


def figure(values: Sequence[float], unit: str, digits: int = 1) -> dict[str, Any]:
    """Several runs of one measurement: every run, and their min / median / max."""
    vals = [float(v) for v in values]
    if not vals:
        return {"unit": unit, "runs": [], "min": None, "median": None, "max": None}
    return {
        "unit": unit,
        "runs": [round(v, digits) for v in vals],
        "min": round(min(vals), digits),
        "median": round(statistics.median(vals), digits),
        "max": round(max(vals), digits),
    }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p50, p95) of raw samples."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def compact_sql(sql: str, limit: int = 220) -> str:
    """A query on one line without its column list (``SELECT … FROM``): what it filters and
    orders by."""
    sql = " ".join(sql.split())
    head, sep, rest = sql.partition(" FROM ")
    text = f"{head.split(' ', 1)[0]} … FROM {rest}" if sep and head.startswith("SELECT") else sql
    return text[:limit]


def ms(seconds: float) -> float:
    return seconds * 1000.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- people ------------------------------------------------------------------------------


def login_cookie(user: Any) -> str:
    """A logged-in session for ``user`` (the ``sessionid`` cookie value)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return str(client.cookies["sessionid"].value)


def member(org: Any, username: str, role: str) -> Any:
    from django.contrib.auth import get_user_model

    from rensei.models import Membership

    user, _ = get_user_model().objects.get_or_create(username=username)
    user.set_unusable_password()
    user.save()
    Membership.objects.get_or_create(user=user, org=org, defaults={"role": role})
    return user


# --- the machine -------------------------------------------------------------------------


def cpu_probe_ms(rounds: int = 5) -> float:
    """A fixed pure-Python loop (two million additions), best of ``rounds``, in ms: how fast
    this machine runs Python at this moment. Shared hosts change speed from hour to hour, so
    runs on different days, or the start and end of one run, are compared by it."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(ms(best), 1)


def machine(pg_version: str) -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = 0.0
    try:
        meminfo = Path("/proc/meminfo").read_text()
        found = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
        if found:
            ram_gib = round(int(found.group(1)) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "cpu_model": cpu_model or platform.processor() or "unknown",
        "python": platform.python_version(),
        "postgresql": pg_version,
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_probe_ms_at_start": cpu_probe_ms(),
    }


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    """A child process in its own session, logging to bench/results/logs/<name>.log."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self._log = self.log_path.open("wb")
        self._stopped = False
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the process group this child leads, then SIGKILL what is left (once)."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        # Children that outlived their parent still carry its group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def wait_until(check: Any, timeout: float, what: str, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}" + (f":\n{proc.tail()}" if proc else ""))


def start_gunicorn(
    env: dict[str, str], workers: int, threads: int, cwd: Path = ROOT, name: str = "gunicorn"
) -> tuple[Proc, str]:
    """gunicorn serving the code in ``cwd`` (the project itself, or an older commit's tree)."""
    import httpx

    port = free_port()
    proc = Proc(
        name,
        [
            sys.executable, "-m", "gunicorn", "rensei.wsgi:application",
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads),
            "--worker-class", "gthread", "--timeout", "120", "--backlog", "512",
            "--log-level", "warning",
        ],
        env,
        cwd,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{url}/accounts/login/", trust_env=False).status_code == 200,
        60,
        name,
        proc,
    )
    return proc, url


def start_worker(env: dict[str, str], queue: str, concurrency: int, name: str) -> Proc:
    return Proc(
        name,
        [
            sys.executable, "-m", "celery", "-A", "rensei", "worker",
            "--pool", "prefork", "--concurrency", str(concurrency),
            "--queues", queue, "--hostname", f"{name}@%h",
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat",
        ],
        env,
    )  # fmt: skip


def wait_worker_ready(queue: str, timeout: float = 90) -> None:
    """A round trip through the broker and the worker: the ping task answers."""
    import uuid

    from rensei.tasks import ping

    token = uuid.uuid4().hex
    answer = ping.apply_async(args=(token,), queue=queue).get(timeout=timeout)
    if answer.get("token") != token:
        raise RuntimeError(f"worker answered {answer!r}")


def start_emulator(
    env: dict[str, str], create_latency_ms: float, name: str, *, records: bool = False
) -> tuple[Proc, str]:
    """The emulator in a process of its own (bench/emulator.py); ``records``: sandboxes as
    records only, for fleets of idle sandboxes (see its ``--records``)."""
    command = [sys.executable, "-m", "bench.emulator", "--create-latency-ms"]
    command += [str(create_latency_ms), *(["--records"] if records else [])]
    proc = Proc(name, command, env)
    found: list[str] = []

    def listening() -> bool:
        m = re.search(r"listening on (http://\S+)", proc.log_path.read_text(errors="replace"))
        if m:
            found.append(m.group(1))
        return bool(m)

    wait_until(listening, 30, "the E2B emulator", proc)
    return proc, found[0]
