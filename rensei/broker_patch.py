"""A fix for kombu 5.7.0's Redis transport, applied when the Celery app loads.

After a lost broker connection, Celery 5.7.0's consumer collects the connection (which
detaches the transport from it) and then closes it once more. If the worker still held
unacknowledged messages (a retry waiting out its countdown, a job still running), the
second close tries to hand them back to Redis through the detached transport, and the
``AttributeError`` it raised stopped the whole worker instead of letting it reconnect. Here
a detached transport raises the connection error every caller already handles: the close is
then ignored as on any lost connection, Redis hands the messages back after the visibility
timeout, and the intent sweep (sessions.intents) sends their jobs again sooner.
tests/reliability/test_broker_restart.py holds a message unacknowledged across a Redis
restart and fails without it.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as redis_transport

_Channel: Any = redis_transport.Channel
_connparams = _Channel._connparams


def _connparams_or_lost(self: Any, asynchronous: bool = False) -> dict[str, Any]:
    if self.connection.client is None:
        raise redis.exceptions.ConnectionError("the broker connection was closed")
    params: dict[str, Any] = _connparams(self, asynchronous)
    return params


def apply() -> None:
    _Channel._connparams = _connparams_or_lost
