"""The provider contract every sandbox provider meets.

Providers never touch models: they take plain values (a credential string, a validated
config, a spec) and return plain values (a handle, a result), so each can be tested against
its emulator alone. A provider instance is bound to one credential and, optionally, a bound
on how long each call may take (``timeout``, seconds); everything builds one through the
factory in ``pools.providers`` (``for_pool``, ``for_org``, ``build``).

Errors are one type, ``ProviderError``, whose ``permanent`` flag decides what the caller
does: retry with backoff (transient: 429, 5xx, timeouts) or give up / fail over (permanent:
bad credential, unknown template, unsupported operation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

# The config's own error (defined with the config model), raised by validate_config.
from pools.config import ConfigError as ConfigError


class ProviderError(Exception):
    """A provider call failed. ``message`` is fit to show an admin; it never holds a secret."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class CommandTimeout(ProviderError):
    """A command ran past its timeout and was stopped; what it printed until then was
    delivered through ``on_output``. Permanent: re-running a command is not a safe retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True, status_code=504)


class NotSupported(ProviderError):
    """The provider cannot do this (its capability profile says so)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do. ``rows()`` gives (key, human label, value in words)."""

    transport_model: str
    supports_fs_snapshot: bool
    supports_pause_resume: bool
    supports_capacity_query: bool
    max_concurrent: int | None
    max_session_duration_seconds: int | None
    os: str
    arch: str
    idle_cost_model: str
    billing_model: str
    supports_gpu: bool
    supports_custom_network_policy: bool
    egress_default: str
    supports_exec: bool
    # key -> explanation shown beside the value (e.g. "tier-gated by E2B")
    notes: Mapping[str, str] = field(default_factory=dict)

    LABELS: ClassVar[dict[str, str]] = {
        "transport_model": "Transport model",
        "supports_fs_snapshot": "Filesystem snapshot",
        "supports_pause_resume": "Pause / resume",
        "supports_capacity_query": "Capacity query",
        "max_concurrent": "Max concurrent sandboxes",
        "max_session_duration_seconds": "Max session duration",
        "os": "OS",
        "arch": "Architecture",
        "idle_cost_model": "Idle cost model",
        "billing_model": "Billing model",
        "supports_gpu": "GPU",
        "supports_custom_network_policy": "Custom network policy",
        "egress_default": "Default egress",
        "supports_exec": "One-shot exec (execCommand)",
    }

    # The product doc's names for the same keys (its "Capability profile" table).
    DOC_KEYS: ClassVar[dict[str, str]] = {
        "transport_model": "transportModel",
        "supports_fs_snapshot": "supportsFsSnapshot",
        "supports_pause_resume": "supportsPauseResume",
        "supports_capacity_query": "supportsCapacityQuery",
        "max_concurrent": "maxConcurrent",
        "max_session_duration_seconds": "maxSessionDurationSeconds",
        "os": "os",
        "arch": "arch",
        "idle_cost_model": "idleCostModel",
        "billing_model": "billingModel",
        "supports_gpu": "supportsGpu",
        "supports_custom_network_policy": "supportsCustomNetworkPolicy",
        "egress_default": "egressDefault",
        "supports_exec": "supportsExecCommand",
    }

    def rows(self) -> list[tuple[str, str, str]]:
        out = []
        for key, label in self.LABELS.items():
            value: Any = getattr(self, key)
            if isinstance(value, bool):
                text = "yes" if value else "no"
            elif value is None:
                text = "none published"
            else:
                text = str(value)
            note = self.notes.get(key)
            out.append((key, label, f"{text} ({note})" if note else text))
        return out

    def doc_rows(self) -> list[tuple[str, str, str, str]]:
        """(doc key, human label, value as the product doc writes it, value in words).

        The doc writes JSON-ish literals (``true``, ``null``) with the note in brackets,
        e.g. ``null (tier-gated by E2B)``; the pages show both forms side by side.
        """
        out = []
        for key, label, words in self.rows():
            value: Any = getattr(self, key)
            if isinstance(value, bool):
                literal = "true" if value else "false"
            elif value is None:
                literal = "null"
            else:
                literal = str(value)
            note = self.notes.get(key)
            out.append(
                (self.DOC_KEYS[key], label, f"{literal} ({note})" if note else literal, words)
            )
        return out


@dataclass(frozen=True)
class SandboxSpec:
    """What to start. ``metadata`` travels to the provider (E2B sandbox metadata)."""

    session_id: str
    request_id: str
    org_slug: str
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxHandle:
    sandbox_id: str
    template: str
    vcpu: int
    memory_mb: int
    started_at: datetime
    # Set when the figures above are the provider's earlier word on the template, not on
    # this sandbox: returns the handle as the provider describes the sandbox (one call),
    # for the caller to make after it recorded this one (ProviderError if the call fails).
    confirm: Callable[[], SandboxHandle] | None = field(default=None, compare=False, repr=False)


# Receives ("stdout" | "stderr", text) for each piece of output as the sandbox prints it.
OutputCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SandboxInfo:
    """One sandbox as the provider lists it (for the reconciler)."""

    sandbox_id: str
    template: str
    state: str  # "running" | "paused"
    metadata: Mapping[str, str]
    started_at: datetime | None = None
    end_at: datetime | None = None
    vcpu: int = 0
    memory_mb: int = 0


@dataclass(frozen=True)
class MetricSample:
    """One resource sample of a sandbox (E2B takes one every 5 s)."""

    at: datetime
    cpu_pct: float
    cpu_count: int
    mem_used_mb: float
    mem_total_mb: float
    disk_used_mb: float
    disk_total_mb: float


@dataclass(frozen=True)
class FileEntry:
    """One entry of a sandbox directory."""

    name: str
    path: str
    type: str  # "dir" | "file"
    size: int


@dataclass(frozen=True)
class FileContent:
    """The first ``max_bytes`` of a sandbox file; ``size`` is the whole file's size."""

    path: str
    data: bytes
    size: int
    truncated: bool


class Provider(ABC):
    """One sandbox provider, bound to one credential."""

    kind: ClassVar[str]
    label: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    runtime_kinds: ClassVar[tuple[str, ...]]
    requirement_kinds: ClassVar[tuple[str, ...]]
    # False for providers that need no secret (the in-memory fake used by tests).
    requires_credential: ClassVar[bool] = True

    def __init__(
        self,
        credential: str,
        *,
        api_url: str = "",
        sandbox_url: str = "",
        timeout: float | None = None,
    ) -> None:
        self.credential = credential
        self.api_url = api_url
        self.sandbox_url = sandbox_url
        # Seconds any one call may take before it fails with a transient ProviderError
        # ("… did not answer within N s"); None: the provider SDK's own default.
        self.timeout = timeout

    def __repr__(self) -> str:
        # Tracebacks and logs show providers; the credential never appears in them.
        return f"<{type(self).__name__} api_url={self.api_url or 'default'!r}>"

    @classmethod
    @abstractmethod
    def validate_config(cls, raw: Any) -> dict[str, Any]:
        """Return the normalised config (defaults filled) or raise ``ConfigError``."""

    @abstractmethod
    def ping(self) -> float:
        """One cheap authenticated call (Test connection); returns latency in ms."""

    @abstractmethod
    def provision(self, config: Mapping[str, Any], spec: SandboxSpec) -> SandboxHandle:
        """Start a sandbox; idempotent on ``spec.request_id``."""

    @abstractmethod
    def exec_command(
        self,
        handle: SandboxHandle | str,
        command: str,
        env: Mapping[str, str] | None = None,
        timeout: int = 600,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run ``command`` through /bin/bash; a non-zero exit is a result, not an error.

        Past ``timeout`` seconds the command is stopped and ``CommandTimeout`` raised.

        ``on_output(stream, text)``, when given, is called with each piece of output as
        the sandbox prints it (``stream`` is ``"stdout"`` or ``"stderr"``; the pieces of
        one stream, joined, are its whole output), from the calling thread, before this
        returns or raises, and it must not raise. The result's ``stdout`` and ``stderr``
        are then empty: the callback had every byte, and a command that prints gigabytes
        must not be held in memory twice. Without it they hold the whole output.
        """

    @abstractmethod
    def pause(self, handle: SandboxHandle | str) -> bool:
        """Pause; False when it was already paused."""

    @abstractmethod
    def resume(
        self, handle: SandboxHandle | str, timeout_seconds: int | None = None
    ) -> SandboxHandle:
        """Resume; the returned handle carries the id the provider answered with."""

    @abstractmethod
    def terminate(self, handle: SandboxHandle | str) -> bool:
        """Kill; safe to call twice (False when it was already gone)."""

    @abstractmethod
    def status(self, handle: SandboxHandle | str) -> SandboxInfo | None:
        """The sandbox as the provider sees it, None when it does not exist."""

    @abstractmethod
    def list_sandboxes(
        self,
        metadata: Mapping[str, str] | None = None,
        states: Sequence[str] = ("running", "paused"),
    ) -> list[SandboxInfo]:
        """Every sandbox matching the metadata filter, across pages."""

    # Inside the box: not abstract, so a provider without them says so instead of failing
    # to instantiate.

    def metrics(
        self, handle: SandboxHandle | str, start: datetime, end: datetime
    ) -> list[MetricSample]:
        """The sandbox's resource samples between ``start`` and ``end``, oldest first."""
        raise NotSupported(f"{self.label} does not report sandbox metrics.")

    def list_files(self, handle: SandboxHandle | str, path: str) -> list[FileEntry]:
        """The entries of directory ``path`` (absolute), directories first, then by name.

        A missing path is a permanent ``ProviderError`` "No such file or directory: <path>".
        A paused sandbox is refused (409), never resumed.
        """
        raise NotSupported(f"{self.label} does not offer a file browser.")

    def read_file(self, handle: SandboxHandle | str, path: str, max_bytes: int) -> FileContent:
        """At most ``max_bytes`` of file ``path`` (absolute); errors as ``list_files``."""
        raise NotSupported(f"{self.label} does not offer a file browser.")
