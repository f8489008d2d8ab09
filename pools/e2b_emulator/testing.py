"""Running the emulator inside a test process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from e2b.connection_config import ApiParams

from .server import EmulatorServer
from .state import Emulator


@dataclass(frozen=True)
class RunningEmulator:
    """What :func:`running_emulator` yields."""

    url: str  # both the API URL and the sandbox (envd) URL
    emulator: Emulator  # state, knobs and call log
    server: EmulatorServer

    @property
    def sdk_kwargs(self) -> ApiParams:
        """``api_url``/``sandbox_url``/``api_key`` for any ``Sandbox`` classmethod (a new dict)."""
        key = next(iter(sorted(self.emulator.api_keys)), "e2b_local_emulator_key")
        return {"api_url": self.url, "sandbox_url": self.url, "api_key": key}


@contextmanager
def running_emulator(**knobs: Any) -> Iterator[RunningEmulator]:
    """Serve a fresh emulator on 127.0.0.1 (free port) in a background thread.

    ``knobs`` are :class:`~pools.e2b_emulator.state.Emulator` keyword arguments. On exit
    every sandbox is killed and every temp directory removed.
    """
    server = EmulatorServer(Emulator(**knobs), host="127.0.0.1", port=0).start()
    try:
        yield RunningEmulator(url=server.url, emulator=server.emulator, server=server)
    finally:
        server.stop()
