"""What E2B said a template's sandboxes are, so a provision needs no ``get_info`` before it
is recorded.

``Sandbox.create`` answers with the sandbox's id and envd's address, not its vCPUs, memory
or start time, which the session's billing needs. The first sandbox of a template (per
endpoint, key and process) asks ``get_info`` before it is recorded; later ones within
``TTL_S`` are recorded with the sizes remembered here and the time the create was sent (E2B
starts the VM after that), and the job confirms them with ``get_info`` right after the
session is running (``SandboxHandle.confirm``; ``sessions.lifecycle.confirm_handle``
corrects the session and its interval when E2B says otherwise, e.g. a template rebuilt with
other sizes). E2B's own round trip thus leaves the path to ``running`` but not the record.

Per process: a Celery prefork child fills its own after the fork. No secret is kept (the
key is hashed into the cache key).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from pools.providers.base import SandboxHandle

TTL_S = 600.0
MAX_ENTRIES = 1000  # templates × keys × endpoints one process provisions: a guard only


@dataclass(frozen=True)
class Sizes:
    template: str  # the template id E2B reported (the pool may name it by alias)
    vcpu: int
    memory_mb: int
    at: float  # time.monotonic() when E2B said so


_known: dict[str, Sizes] = {}
_lock = threading.Lock()


def key(endpoint: str, credential: str, template: str) -> str:
    digest = hashlib.sha256(credential.encode()).hexdigest()[:16]
    return f"{endpoint}|{digest}|{template}"


def known(cache_key: str) -> Sizes | None:
    """The remembered sizes, unless older than ``TTL_S``."""
    with _lock:
        sizes = _known.get(cache_key)
    if sizes is None or time.monotonic() - sizes.at > TTL_S:
        return None
    return sizes


def remember(cache_key: str, template: str, vcpu: int, memory_mb: int) -> None:
    with _lock:
        if len(_known) >= MAX_ENTRIES:
            _known.clear()
        _known[cache_key] = Sizes(template, vcpu, memory_mb, time.monotonic())


def described(sandbox: Any, cache_key: str, template: str) -> SandboxHandle:
    """The handle as E2B's ``get_info`` describes ``sandbox`` (an SDK ``Sandbox``), its
    template's sizes remembered. SDK errors pass through."""
    info = sandbox.get_info()
    started = info.started_at
    handle = SandboxHandle(
        sandbox_id=sandbox.sandbox_id,
        template=info.template_id or template,
        vcpu=int(info.cpu_count),
        memory_mb=int(info.memory_mb),
        started_at=started if started.tzinfo else started.replace(tzinfo=UTC),
    )
    remember(cache_key, handle.template, handle.vcpu, handle.memory_mb)
    return handle


def forget() -> None:
    """Tests: start from nothing."""
    with _lock:
        _known.clear()
