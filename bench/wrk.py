"""50 users' throughput as measured by wrk, a load generator written in C.

B4's own client is Python: 50 threads, each with an httpx keep-alive connection. On two
cores it takes a share of the CPU the server needs (3 to 4 ms a request, measured on the
liveness check: wrk gets about four times the Python client's throughput from the same
server), and that share weighs most on the cheapest pages. wrk, with as many keep-alive
connections on two threads, costs the machine a small fraction of that, so its figure is
closer to the server's own capacity. B4 reports both; neither replaces the other.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

CONNECTIONS = 50
THREADS = 2
RUNS = 2
# A run lasts long enough for about this many requests at the page's rate: wrk counts only
# the requests that finish within the run, and the server's threads (12 in the bench) have a
# request each in flight at its end and just begun at its start, so a run of N requests
# misses up to about 12 ÷ N of the work: 4% at 300.
COMPLETIONS = 300
SECONDS = 4
MAX_SECONDS = 25

_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_NOT_200 = re.compile(r"Not 200:\s+(\d+)")  # printed by wrk_cookie.lua
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def path() -> str | None:
    return shutil.which("wrk")


def parse(output: str) -> dict[str, Any]:
    """Throughput, requests and errors (answers but 200, and socket errors) of one run."""
    rate, total = _RATE.search(output), _TOTAL.search(output)
    if rate is None or total is None:
        raise ValueError(f"wrk printed no throughput: {output.strip()[:200]!r}")
    not_200 = _NOT_200.search(output)
    if not_200 is None:
        raise ValueError(
            f"wrk ran without the cookie script (bench/wrk_cookie.lua): {output.strip()[:200]!r}"
        )
    socket = _SOCKET.search(output)
    errors = int(not_200.group(1))
    errors += sum(int(n) for n in socket.groups()) if socket else 0
    return {"per_second": float(rate.group(1)), "requests": int(total.group(1)), "errors": errors}


def seconds_for(rate: float) -> float:
    """The run length for a page served at about ``rate`` requests a second."""
    if rate <= 0:
        return float(MAX_SECONDS)
    return float(min(MAX_SECONDS, max(SECONDS, math.ceil(COMPLETIONS / rate))))


# The login cookie reaches wrk through its environment, read by this script: a command
# line is readable by every local user (ps, /proc), an environment only by the same user.
COOKIE_ENV = "BENCH_WRK_SESSION_COOKIE"
SCRIPT = Path(__file__).with_name("wrk_cookie.lua")


def run(url: str, cookie: str, seconds: float = SECONDS) -> dict[str, Any]:
    """One wrk run of ``seconds`` against ``url`` with the ``sessionid`` cookie."""
    binary = path()
    if binary is None:
        raise FileNotFoundError("wrk is not installed")
    out = subprocess.run(
        [
            binary, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s",
            "--timeout", "120s", "-s", str(SCRIPT), url,
        ],
        capture_output=True, text=True, check=True, timeout=seconds + 150,
        env={**os.environ, COOKIE_ENV: cookie},
    )  # fmt: skip
    return parse(out.stdout)
