"""Sending session jobs: by task name, once the surrounding transaction commits.

Dispatch, the actions and the reconciler start jobs; ``sessions.tasks`` defines them on top
of the job bodies, which use dispatch. Sending by name keeps that a line, not a circle:
nothing below ``sessions.tasks`` imports it. The names are the tasks' registered names (the
wire format between web and worker), so they never change with a module's layout.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from kombu.exceptions import OperationalError

from rensei.celery import app

log = logging.getLogger(__name__)

PROVISION = "sessions.tasks.provision_session"
PAUSE = "sessions.tasks.pause_session"
RESUME = "sessions.tasks.resume_session"
TERMINATE = "sessions.tasks.terminate_session"
EXEC = "sessions.tasks.exec_command"
RECONCILE_ALL = "sessions.tasks.reconcile_all"
RECONCILE_ORG = "sessions.tasks.reconcile_org"


def send(name: str, *args: Any) -> None:
    """Send task ``name`` with ``args`` (ids only) when the surrounding transaction commits
    (at once outside one), never for a rolled-back change."""
    transaction.on_commit(lambda: _publish(name, args))


def _publish(name: str, args: tuple[Any, ...]) -> None:
    # A signature resolves the registered task when there is one (its options, eager mode),
    # and falls back to sending by name.
    try:
        app.signature(name, args=args).delay()
    except OperationalError as exc:
        # The broker is down. The change is committed and says what the job must do: the
        # workers' intent sweep (sessions.intents) sends it once the broker is back.
        log.warning("could not send %s%s now (%s); the intent sweep will", name, args, exc)
