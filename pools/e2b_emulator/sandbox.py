"""One sandbox's record, the control plane's error type, and E2B's fixed strings."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import string
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .isolation import Box
from .metrics import Meter
from .processes import ManagedProcess
from .templates import Template

ENVD_VERSION = "0.6.13"
CLIENT_ID = "00000000"
DEFAULT_TIMEOUT_S = 300
MAX_TIMEOUT_S = 24 * 3600
SANDBOX_NOT_FOUND = "The sandbox was not found"
CONCURRENCY_MESSAGE = (
    "you have reached the maximum number of concurrent E2B sandboxes ({n}). "
    "If you need more, please visit 'https://e2b.dev/docs/billing'"
)
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_sandbox_id() -> str:
    """20 random ``[a-z0-9]`` characters, like E2B's ids."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


class ApiError(Exception):
    """A control-plane error: answered as ``{"code": status, "message": message}``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def process_state(pid: int) -> str:
    """The state letter of ``/proc/<pid>/stat`` ("R", "S", "T", "Z"...), "" once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def not_found(sandbox_id: str) -> ApiError:
    return ApiError(404, f"Sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")


@dataclass
class Sandbox:
    """A sandbox: its settings, its private home directory and its process groups."""

    sandbox_id: str
    template: Template
    metadata: dict[str, str]
    env_vars: dict[str, str]
    auto_pause: bool
    auto_resume: bool | None
    access_token: str
    home: Path
    started_at: datetime
    seq: int
    end_mono: float
    run_started_mono: float
    box: Box
    owner: str = ""  # the API key (team) that created it; "" when keys are not told apart
    state: str = "running"  # or "paused"
    processes: dict[int, ManagedProcess] = field(default_factory=dict)
    pgids: set[int] = field(default_factory=set)
    # Samples for get_metrics, oldest first (see metrics.py); an hour and a bit at 5 s.
    samples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    meter: Meter = field(default_factory=Meter)

    @property
    def end_at(self) -> datetime:
        """Wall-clock endAt derived from the monotonic deadline (immune to clock jumps)."""
        return datetime.now(UTC) + timedelta(seconds=self.end_mono - time.monotonic())

    def signal_all(self, sig: int) -> None:
        """Signal every process of the box: its command groups, and in a namespace also
        whatever left them (``setsid``), so a pause freezes all of it."""
        if sig == signal.SIGCONT:
            # The box's processes first, then the groups with their nsenter: an nsenter that
            # still saw its command stopped would stop itself again (see unstick_launchers).
            self.box.signal_all(sig, self.pgids)
            self.signal_groups(sig)
        else:
            self.signal_groups(sig)
            self.box.signal_all(sig, self.pgids)

    def unstick_launchers(self) -> bool:
        """Continue any command launcher (nsenter) that stopped itself; True if one did.

        nsenter mirrors its command's stops: when it sees the command stopped it stops
        itself, and it continues the command when it is continued. A pause stops both; if
        nsenter notices the command's stop only after the resume, it stops itself for good
        and the command's end is never reported. Run shortly after a resume.
        """
        found = False
        for proc in list(self.processes.values()):
            if proc.running and process_state(proc.pid) == "T":
                found = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, signal.SIGCONT)
        return found

    def signal_groups(self, sig: int) -> None:
        for pgid in list(self.pgids):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                self.pgids.discard(pgid)
            except PermissionError:
                pass
