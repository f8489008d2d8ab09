"""System checks for the core app."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error

from rensei import crypto


def encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A ring that cannot encrypt means no credential can be saved or used: refuse to run."""
    problem = crypto.key_ring_problem()
    if problem is None:
        return []
    return [
        Error(
            problem,
            hint="Set RENSEI_ENCRYPTION_KEYS to one or more comma-separated Fernet keys.",
            id="rensei.E001",
        )
    ]
