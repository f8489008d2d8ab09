"""A session's environment values: encrypted at rest, in clear only for the job using them."""

from __future__ import annotations

import json
from collections.abc import Mapping

from rensei.crypto import decrypt, encrypt
from sessions.models import CommandRun, Session


def encrypt_env(env: Mapping[str, str]) -> dict[str, str]:
    """NAME → encrypted value: pages can list names without ever holding a value."""
    return {name: encrypt(value) for name, value in env.items()}


def session_env(session: Session) -> dict[str, str]:
    """The session's env in clear, for the job that hands it to the sandbox. Never render."""
    return {name: decrypt(token) for name, token in (session.env or {}).items()}


def command_env(run: CommandRun) -> dict[str, str]:
    """A command run's env in clear, for the exec job (empty once the job has used it)."""
    if not run.env_encrypted:
        return {}
    loaded: dict[str, str] = json.loads(decrypt(run.env_encrypted))
    return loaded
