"""The project's settings for a test run, with a var/ directory of the run's own.

The embedded default keeps its SQLite files, the filesystem broker's queue and control
folders, Celery results and beat's schedule under var/. A `make run` demo on the same machine
uses the repo's var/, so a test run that shared it would hand its jobs to the demo's worker
(and take the demo's), share the broker's control files with it, and race any other test
run for var/test.sqlite3. Each run therefore gets a fresh directory, exported so the
workers, servers and commands the tests start inherit it; it is removed when the run ends
(or by the next run, if this one was killed). A directory given in RENSEI_VAR_DIR is used
as it is, and kept.

Jobs published without a worker of the test's own go to a queue named for this run, so on a
shared Redis no other run's or demo's worker takes them either.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

PREFIX = "rensei-test-var-"


def _sweep_abandoned() -> None:
    """Remove the directories of runs that were killed (their owner pid is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((folder / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            pass  # not ours to judge: no owner file yet, or another user's run


OWN_VAR_DIR: str | None = None
if not os.environ.get("RENSEI_VAR_DIR"):
    _sweep_abandoned()
    OWN_VAR_DIR = tempfile.mkdtemp(prefix=PREFIX)
    Path(OWN_VAR_DIR, "owner.pid").write_text(str(os.getpid()))
    os.environ["RENSEI_VAR_DIR"] = OWN_VAR_DIR
    # At exit, after pytest has stopped the workers and dropped the test database; also when
    # the run ends early (a usage or collection error).
    atexit.register(shutil.rmtree, OWN_VAR_DIR, ignore_errors=True)
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"test-run-{uuid.uuid4().hex[:10]}")

# `pytest -n N` (make test runs the tests without a browser that way): each pytest-xdist
# worker is a run beside the others, with a var dir inside the run's and a default queue of
# its own (pytest-django gives it its own test database, test_…_gw0). Done once per worker:
# the workers, servers and commands a test starts import these settings again and inherit
# the worker's.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if XDIST_WORKER and os.environ.get("RENSEI_TEST_XDIST_WORKER") != XDIST_WORKER:
    os.environ["RENSEI_TEST_XDIST_WORKER"] = XDIST_WORKER
    _worker_var = Path(os.environ["RENSEI_VAR_DIR"], XDIST_WORKER)
    _worker_var.mkdir(exist_ok=True)
    os.environ["RENSEI_VAR_DIR"] = str(_worker_var)
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] += f"-{XDIST_WORKER}"

from rensei.settings import *  # noqa: E402, F403

# The database owner, when DATABASE_OWNER_URL names one beside DATABASE_URL's role (CI does):
# the owner creates, migrates, flushes and drops the test database, and the tests connect as
# DATABASE_URL's role, the application's, which owns nothing (tests/db_roles.py). None: the
# suite connects as DATABASE_URL's role for everything, as before (SQLite, or a developer
# whose DATABASE_URL is the owner).
TEST_DATABASE_OWNER: dict[str, object] | None = None

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    # Transactional tests empty the tables with TRUNCATE, which the billing guards refuse
    # unless the owner says so (billing/triggers.py); the tests that prove the refusal
    # switch it off again in their own transaction. The switch does nothing for a role
    # that does not own the tables.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c rensei.allow_truncate=on"  # noqa: F405
    if env.str("DATABASE_OWNER_URL", default=""):  # noqa: F405
        _owner = env.db_url("DATABASE_OWNER_URL")  # noqa: F405
        if _owner["USER"] != DATABASES["default"]["USER"]:  # noqa: F405
            # Only who connects where: the database's name is DATABASE_URL's (test_ + it).
            TEST_DATABASE_OWNER = {key: _owner[key] for key in ("USER", "PASSWORD", "HOST", "PORT")}
