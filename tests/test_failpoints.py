"""Failpoints: a no-op unless RENSEI_FAILPOINTS arms the name; ``crash`` kills the process.

A crash is a SIGKILL, so each armed run happens in a child process of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from rensei.failpoints import armed, failpoint

REACH = (
    "import django; django.setup(); "
    "from rensei.failpoints import failpoint; failpoint('after-create'); print('alive')"
)


def reach(spec: str) -> subprocess.CompletedProcess[str]:
    """A child process with ``RENSEI_FAILPOINTS=spec`` that reaches ``after-create``."""
    env = {**os.environ, "RENSEI_FAILPOINTS": spec}
    return subprocess.run(
        [sys.executable, "-c", REACH], env=env, capture_output=True, text=True, timeout=120
    )


def test_unarmed_failpoints_do_nothing() -> None:
    with override_settings(RENSEI_FAILPOINTS=""):
        failpoint("after-create")
    with override_settings(RENSEI_FAILPOINTS="somewhere-else=crash"):
        failpoint("after-create")


def test_crash_with_a_counter_kills_the_process_while_the_count_lasts(tmp_path: Path) -> None:
    counter = tmp_path / "crashes"
    counter.write_text("1")
    first = reach(f"after-create=crash:{counter}")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert "alive" not in first.stdout
    assert counter.read_text() == "0"
    second = reach(f"after-create=crash:{counter}")
    assert second.returncode == 0 and "alive" in second.stdout, second.stderr


def test_crash_without_a_counter_kills_every_time() -> None:
    assert reach("after-create=crash").returncode == -signal.SIGKILL
    assert reach("other=crash").returncode == 0


def test_an_unknown_action_is_refused_by_name() -> None:
    assert armed(" a=crash:/f , b=crash,") == {"a": ("crash", "/f"), "b": ("crash", "")}
    with pytest.raises(ImproperlyConfigured, match="unknown action 'explode' for 'after-create'"):
        armed("after-create=explode")
