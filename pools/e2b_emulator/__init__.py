"""A local E2B emulator: E2B's control-plane REST API and envd (processes, files) on one port.

For development and tests only; it is never a substitute for E2B. The official SDKs,
pointed at it with ``E2B_API_URL``/``E2B_SANDBOX_URL``, work unmodified for the operations
the platform uses. Pure Python (no Django), so it runs standalone:

    python -m pools.e2b_emulator --port 0

and in tests through :func:`pools.e2b_emulator.testing.running_emulator` or the
``e2b_emulator`` pytest fixture (``pools.e2b_emulator.pytest_plugin``).
"""

from __future__ import annotations

from .faults import CallRecord
from .server import EmulatorServer
from .state import Emulator
from .templates import Template

__all__ = ["CallRecord", "Emulator", "EmulatorServer", "Template"]
