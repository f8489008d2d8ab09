"""Fault injection for tests, by name: production code says ``failpoint("after-create")``
where a crash would hurt most, and that call does nothing unless a test armed the name.

The ``RENSEI_FAILPOINTS`` setting (environment variable of the same name) arms them, as
``name=action`` pairs separated by commas::

    RENSEI_FAILPOINTS=after-create=crash            # SIGKILL this process every time
    RENSEI_FAILPOINTS=after-create=crash:<file>     # the same while <file> holds N > 0,
                                                    # counting N down (N = 1: one crash)

Actions: ``crash`` kills the process that reaches the point with SIGKILL, the way a worker
dies mid-job (no ``finally``, no acknowledgement). An unknown action is refused when the
point is reached. Empty (the default): every failpoint is a no-op. Never set it outside
tests.

Failpoints in the code: ``after-create`` (a provision job holds its sandbox handle, created
or adopted, and has not saved it yet).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

ACTIONS = frozenset({"crash"})


def armed(spec: str) -> dict[str, tuple[str, str]]:
    """``"a=crash:/f,b=crash"`` → ``{"a": ("crash", "/f"), "b": ("crash", "")}``."""
    points: dict[str, tuple[str, str]] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, _, action = item.partition("=")
        kind, _, arg = action.strip().partition(":")
        if kind not in ACTIONS:
            raise ImproperlyConfigured(
                f"RENSEI_FAILPOINTS: unknown action {kind!r} for {name.strip()!r} "
                f"(known: {', '.join(sorted(ACTIONS))})."
            )
        points[name.strip()] = (kind, arg.strip())
    return points


def failpoint(name: str) -> None:
    """Act as ``RENSEI_FAILPOINTS`` says for ``name``; nothing when it is not armed."""
    spec = getattr(settings, "RENSEI_FAILPOINTS", "")
    if not spec:
        return
    point = armed(spec).get(name)
    if point is None:
        return
    _kind, counter = point
    if counter and not _take_one(counter):
        return
    log.warning("failpoint %s: killing process %s", name, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def _take_one(path: str) -> bool:
    """Count the file's number down by one; False when it is 0, missing or unreadable."""
    try:
        with open(path, "r+") as counter:
            fcntl.flock(counter, fcntl.LOCK_EX)  # two worker children may race for it
            left = int(counter.read().strip() or 0)
            if left <= 0:
                return False
            counter.seek(0)
            counter.truncate()
            counter.write(str(left - 1))
    except (OSError, ValueError):
        return False
    return True
