"""Housekeeping tasks of the core app."""

from __future__ import annotations

import logging
import os
import socket

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(ignore_result=False)
def ping(token: str) -> dict[str, object]:
    """Answer with the token and where it ran: proves a worker consumes the queue."""
    return {"token": token, "pid": os.getpid(), "host": socket.gethostname()}


@shared_task
def heartbeat() -> None:
    """Beat's smallest job: shows in the worker log that beat and worker talk."""
    log.info("heartbeat from beat received by worker pid %s", os.getpid())
