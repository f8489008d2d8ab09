"""B4's baseline: the pages as the code of an earlier commit serves them, in the same run.

Issue #20 asks for "≥ 3× today's throughput", where today is the code that
``docs/performance.md`` measured at ``BASELINE_COMMIT``. That code no longer exists on
``main``, so this module takes its tree from git (``git archive``, no checkout, nothing
in the working tree changes) into ``var/bench/baseline-<commit>/src``, collects its static
files into a var dir of its own, and serves it with a second gunicorn of the same size
against the same database, the same settings and the same login. The later migrations
only add tables, columns and indexes, so the older code reads today's schema unchanged.

Both servers run at the same time but are loaded one after the other, page by page, so
each measurement has the machine to itself; the figure is the ratio of the two
throughputs (and the two single-user p50s) measured minutes apart in one run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.common import ROOT, Proc, log, start_gunicorn

BASELINE_COMMIT = "373b661"  # docs/performance.md as issue #20 quotes it


def tree(commit: str = BASELINE_COMMIT) -> Path:
    """The commit's files under var/bench (extracted once; reused by later runs)."""
    home = ROOT / "var" / "bench" / f"baseline-{commit}"
    src = home / "src"
    if not (src / "manage.py").exists():
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
            check=True,
            capture_output=True,
        )
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    return home


def start(env: dict[str, str], workers: int, threads: int) -> tuple[Proc, str]:
    """gunicorn serving BASELINE_COMMIT's code: (process, url)."""
    home = tree()
    src = home / "src"
    old_env = {**env, "PYTHONPATH": str(src), "RENSEI_VAR_DIR": str(home / "var")}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=src,
        env=old_env,
        check=True,
        capture_output=True,
    )
    proc, url = start_gunicorn(old_env, workers, threads, cwd=src, name="gunicorn-baseline")
    log(f"baseline: commit {BASELINE_COMMIT} served on {url}")
    return proc, url
