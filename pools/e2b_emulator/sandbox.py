"""One sandbox's record, the control plane's error type, and E2B's fixed strings."""

from __future__ import annotations

import os
import secrets
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
        self.signal_groups(sig)
        self.box.signal_all(sig, self.pgids)

    def signal_groups(self, sig: int) -> None:
        for pgid in list(self.pgids):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                self.pgids.discard(pgid)
            except PermissionError:
                pass
