"""The project's settings for a test run, with a var/ directory of the run's own.

The embedded default keeps its SQLite files, the filesystem broker's queue and control
folders, Celery results and beat's schedule under var/. A `make run` demo on the same machine
uses the repo's var/, so a test run that shared it would hand its jobs to the demo's worker
(and take the demo's), share the broker's control files with it, and race any other test
run for var/test.sqlite3. Each run therefore gets a fresh directory, exported so the
workers, servers and commands the tests start inherit it; tests/conftest.py removes it when
the run ends. A directory given in RENSEI_VAR_DIR is used as it is (and kept).

Jobs published without a worker of the test's own go to a queue named for this run, so on a
shared Redis no other run's or demo's worker takes them either.
"""

from __future__ import annotations

import os
import tempfile
import uuid

OWN_VAR_DIR: str | None = None
if not os.environ.get("RENSEI_VAR_DIR"):
    OWN_VAR_DIR = tempfile.mkdtemp(prefix="rensei-test-var-")
    os.environ["RENSEI_VAR_DIR"] = OWN_VAR_DIR
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"test-run-{uuid.uuid4().hex[:10]}")

from rensei.settings import *  # noqa: E402, F403
