"""An in-memory provider for unit tests: no network, no processes, fully scriptable.

It is registered only inside tests, through :func:`registered` (a context manager that adds
``"fake"`` to the registry and removes it again)::

    with registered() as cloud:
        pool = CapacityPool.objects.create(org=org, name="f", provider="fake", config={})
        cloud.fail_next("provision", ProviderError("boom", permanent=False))

State lives in one :class:`FakeCloud` shared by every ``FakeProvider`` instance, so a test
sees what a job did. Templates whose id contains ``donmai`` have the donmai binary.
"""

from __future__ import annotations

import itertools
import re
import shlex
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pools.config import validate_e2b_config
from pools.providers import registry
from pools.providers.base import (
    ConfigError,
    ExecResult,
    FileContent,
    FileEntry,
    MetricSample,
    OutputCallback,
    Provider,
    ProviderError,
    SandboxHandle,
    SandboxInfo,
    SandboxSpec,
)
from pools.providers.e2b import E2BProvider

ExecHandler = Callable[["FakeSandbox", str, Mapping[str, str]], ExecResult | None]


@dataclass
class FakeSandbox:
    sandbox_id: str
    template: str
    metadata: dict[str, str]
    env: dict[str, str]
    started_at: datetime
    state: str = "running"
    runner: bool = False  # `donmai agent run` is running
    commands: list[str] = field(default_factory=list)
    # What metrics() reports: a test sets cpu_pct (one value, or one per sample, oldest
    # first); files maps absolute paths to bytes (directories are implied by the paths).
    cpu_pct: float | list[float] = 1.0
    mem_used_mb: float = 128.0
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def has_donmai(self) -> bool:
        return "donmai" in self.template


class FakeCloud:
    """The fake's world: sandboxes, scripted failures and a call log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.idempotent: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, sandbox id or template)
        self.failures: dict[str, list[ProviderError]] = {}
        self.exec_handler: ExecHandler | None = None
        self.known_templates: set[str] | None = None  # None: every template exists
        self._ids = itertools.count(1)

    def fail_next(self, operation: str, error: ProviderError, count: int = 1) -> None:
        """Raise ``error`` on the next ``count`` calls of ``operation`` (e.g. "provision")."""
        with self._lock:
            self.failures.setdefault(operation, []).extend([error] * count)

    def _maybe_fail(self, operation: str) -> None:
        with self._lock:
            queue = self.failures.get(operation)
            error = queue.pop(0) if queue else None
        if error is not None:
            raise error

    def log(self, operation: str, subject: str) -> None:
        with self._lock:
            self.calls.append((operation, subject))

    def new_id(self) -> str:
        return f"fake{next(self._ids):016d}"

    def ids(self, state: str | None = None) -> list[str]:
        return [s.sandbox_id for s in self.sandboxes.values() if state in (None, s.state)]


CLOUD = FakeCloud()

# E2B's profile, so pages and dispatch behave as with the real provider.
FAKE_CAPABILITIES = replace(
    E2BProvider.capabilities, transport_model="in-memory", notes={"transport_model": "test double"}
)


class FakeProvider(Provider):
    kind = "fake"
    label = "Fake (tests)"
    capabilities = FAKE_CAPABILITIES
    runtime_kinds = E2BProvider.runtime_kinds
    requirement_kinds = E2BProvider.requirement_kinds
    requires_credential = False
    vcpu = 2
    memory_mb = 512

    @property
    def cloud(self) -> FakeCloud:
        return CLOUD

    @classmethod
    def validate_config(cls, raw: Any) -> dict[str, Any]:
        # Same keys as E2B so pool forms and jobs exercise the real schema.
        return validate_e2b_config(raw)

    def ping(self) -> float:
        self.cloud._maybe_fail("ping")
        self.cloud.log("ping", "")
        return 0.1

    def provision(self, config: Mapping[str, Any], spec: SandboxSpec) -> SandboxHandle:
        cloud = self.cloud
        try:
            cfg = self.validate_config(dict(config))
        except ConfigError as exc:
            raise ProviderError(f"The pool config is invalid: {exc}", permanent=True) from exc
        template = cfg.get("snapshotId") or cfg["templateId"]
        cloud._maybe_fail("provision")
        cloud.log("provision", template)
        if cloud.known_templates is not None and template not in cloud.known_templates:
            raise ProviderError(f"Template '{template}' not found", permanent=True, status_code=404)
        existing = cloud.idempotent.get(spec.request_id)
        sandbox = cloud.sandboxes.get(existing) if existing else None
        if sandbox is None:
            sandbox = FakeSandbox(
                sandbox_id=cloud.new_id(),
                template=template,
                metadata={
                    **spec.metadata,
                    "rensei_org": spec.org_slug,
                    "rensei_session": spec.session_id,
                    "rensei_request": spec.request_id,
                },
                env={**cfg.get("envVars", {}), **spec.env},
                started_at=datetime.now(UTC),
            )
            cloud.sandboxes[sandbox.sandbox_id] = sandbox
            cloud.idempotent[spec.request_id] = sandbox.sandbox_id
            if cfg["launchRunnerInline"]:
                sandbox.commands.append("nohup donmai agent run >/tmp/donmai-runner.log 2>&1 &")
                sandbox.runner = sandbox.has_donmai
        return self._handle(sandbox)

    def exec_command(
        self,
        handle: SandboxHandle | str,
        command: str,
        env: Mapping[str, str] | None = None,
        timeout: int = 600,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        result = self._exec(handle, command, env)
        if on_output is None:
            return result
        # Whole streams, stdout first: enough for the contract (the callback gets every
        # byte, the result none); timing of pieces is tested against the emulator.
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text:
                on_output(stream, text)
        return replace(result, stdout="", stderr="")

    def _exec(
        self, handle: SandboxHandle | str, command: str, env: Mapping[str, str] | None
    ) -> ExecResult:
        sandbox = self._get(handle)
        self.cloud._maybe_fail("exec_command")
        self.cloud.log("exec_command", sandbox.sandbox_id)
        if sandbox.state == "paused":
            raise ProviderError(
                f"Sandbox {sandbox.sandbox_id} is paused: resume it before running a command.",
                permanent=True,
                status_code=409,
            )
        sandbox.commands.append(command)
        if self.cloud.exec_handler is not None:
            answer = self.cloud.exec_handler(sandbox, command, dict(env or {}))
            if answer is not None:
                return answer
        return _builtin(sandbox, command, {**sandbox.env, **(env or {})})

    def pause(self, handle: SandboxHandle | str) -> bool:
        sandbox = self._get(handle)
        self.cloud._maybe_fail("pause")
        self.cloud.log("pause", sandbox.sandbox_id)
        if sandbox.state == "paused":
            return False
        sandbox.state = "paused"
        return True

    def resume(
        self, handle: SandboxHandle | str, timeout_seconds: int | None = None
    ) -> SandboxHandle:
        sandbox = self._get(handle)
        self.cloud._maybe_fail("resume")
        self.cloud.log("resume", sandbox.sandbox_id)
        sandbox.state = "running"
        return self._handle(sandbox)

    def terminate(self, handle: SandboxHandle | str) -> bool:
        sandbox_id = handle.sandbox_id if isinstance(handle, SandboxHandle) else handle
        self.cloud._maybe_fail("terminate")
        self.cloud.log("terminate", sandbox_id)
        return self.cloud.sandboxes.pop(sandbox_id, None) is not None

    def status(self, handle: SandboxHandle | str) -> SandboxInfo | None:
        sandbox_id = handle.sandbox_id if isinstance(handle, SandboxHandle) else handle
        self.cloud._maybe_fail("status")
        sandbox = self.cloud.sandboxes.get(sandbox_id)
        return _info(sandbox) if sandbox else None

    def list_sandboxes(
        self,
        metadata: Mapping[str, str] | None = None,
        states: Sequence[str] = ("running", "paused"),
    ) -> list[SandboxInfo]:
        self.cloud._maybe_fail("list_sandboxes")
        self.cloud.log("list_sandboxes", "")
        wanted = dict(metadata or {})
        return [
            _info(s)
            for s in list(self.cloud.sandboxes.values())
            if s.state in states and all(s.metadata.get(k) == v for k, v in wanted.items())
        ]

    def metrics(
        self, handle: SandboxHandle | str, start: datetime, end: datetime
    ) -> list[MetricSample]:
        sandbox = self._get(handle)
        self.cloud._maybe_fail("metrics")
        self.cloud.log("metrics", sandbox.sandbox_id)
        return fake_samples(sandbox, max(start, sandbox.started_at), end)

    def list_files(self, handle: SandboxHandle | str, path: str) -> list[FileEntry]:
        sandbox = self._running(handle, "list_files")
        return fake_listing(sandbox, path)

    def read_file(self, handle: SandboxHandle | str, path: str, max_bytes: int) -> FileContent:
        sandbox = self._running(handle, "read_file")
        data = sandbox.files.get(path)
        if data is None:
            is_dir = bool(fake_listing_or_none(sandbox, path))
            what = "Is a directory" if is_dir else "No such file or directory"
            raise ProviderError(f"{what}: {path}", permanent=True, status_code=404)
        return FileContent(path, data[:max_bytes], len(data), len(data) > max_bytes)

    def _running(self, handle: SandboxHandle | str, operation: str) -> FakeSandbox:
        sandbox = self._get(handle)
        self.cloud._maybe_fail(operation)
        self.cloud.log(operation, sandbox.sandbox_id)
        if sandbox.state == "paused":
            raise ProviderError(
                f"Sandbox {sandbox.sandbox_id} is paused: resume it to browse its files.",
                permanent=True,
                status_code=409,
            )
        return sandbox

    def _get(self, handle: SandboxHandle | str) -> FakeSandbox:
        sandbox_id = handle.sandbox_id if isinstance(handle, SandboxHandle) else handle
        sandbox = self.cloud.sandboxes.get(sandbox_id)
        if sandbox is None:
            raise ProviderError(
                f"Sandbox {sandbox_id} was not found (killed, or it reached its timeout).",
                permanent=True,
                status_code=404,
            )
        return sandbox

    def _handle(self, sandbox: FakeSandbox) -> SandboxHandle:
        return SandboxHandle(
            sandbox_id=sandbox.sandbox_id,
            template=sandbox.template,
            vcpu=self.vcpu,
            memory_mb=self.memory_mb,
            started_at=sandbox.started_at,
        )


def _info(sandbox: FakeSandbox) -> SandboxInfo:
    return SandboxInfo(
        sandbox_id=sandbox.sandbox_id,
        template=sandbox.template,
        state=sandbox.state,
        metadata=dict(sandbox.metadata),
        started_at=sandbox.started_at,
        vcpu=FakeProvider.vcpu,
        memory_mb=FakeProvider.memory_mb,
    )


def fake_samples(sandbox: FakeSandbox, start: datetime, end: datetime) -> list[MetricSample]:
    """One sample per 5 s from ``start`` to ``end`` (the last ``len(cpu_pct)`` when a list)."""
    times: list[datetime] = []
    at = start
    while at <= end and len(times) < 10_000:
        times.append(at)
        at += timedelta(seconds=5)
    cpu = sandbox.cpu_pct
    values = cpu[-len(times) :] if isinstance(cpu, list) else [cpu] * len(times)
    times = times[-len(values) :] if values else []
    return [
        MetricSample(
            t,
            float(v),
            FakeProvider.vcpu,
            sandbox.mem_used_mb,
            float(FakeProvider.memory_mb),
            100.0,
            1024.0,
        )
        for t, v in zip(times, values, strict=True)
    ]


def fake_listing_or_none(sandbox: FakeSandbox, path: str) -> list[FileEntry] | None:
    prefix = path.rstrip("/") + "/"
    entries: dict[str, FileEntry] = {}
    for name, data in sandbox.files.items():
        if not name.startswith(prefix):
            continue
        head, _, rest = name[len(prefix) :].partition("/")
        kind = "dir" if rest else "file"
        entries[head] = FileEntry(head, prefix + head, kind, 0 if rest else len(data))
    if not entries:
        return None
    return sorted(entries.values(), key=lambda e: (e.type != "dir", e.name))


def fake_listing(sandbox: FakeSandbox, path: str) -> list[FileEntry]:
    entries = fake_listing_or_none(sandbox, path)
    if entries is None:
        if path in sandbox.files:
            raise ProviderError(f"Not a directory: {path}", permanent=True, status_code=400)
        if path.rstrip("/") in ("/home/user", "/tmp", ""):
            return []  # the home and /tmp exist, even empty
        raise ProviderError(f"No such file or directory: {path}", permanent=True, status_code=404)
    return entries


def _builtin(sandbox: FakeSandbox, command: str, env: Mapping[str, str]) -> ExecResult:
    """The few commands the platform itself runs, answered like a real box would."""
    text = command.strip()
    if text == "which donmai":
        if sandbox.has_donmai:
            return ExecResult(0, "/usr/local/bin/donmai\n", "")
        return ExecResult(1, "", "")
    if text.startswith("nohup donmai agent run"):
        sandbox.runner = sandbox.has_donmai
        return ExecResult(0, "", "")
    if text == 'pgrep -f "donmai agent run"':
        return ExecResult(0, "4242\n", "") if sandbox.runner else ExecResult(1, "", "")
    match = re.fullmatch(r"exit (\d+)", text)
    if match:
        return ExecResult(int(match.group(1)), "", "")
    if text.startswith("echo "):
        words = shlex.split(text[5:]) if text[5:].strip() else []
        out = " ".join(env.get(w[1:], "") if w.startswith("$") else w for w in words)
        return ExecResult(0, out + "\n", "")
    return ExecResult(0, "", "")


@contextmanager
def registered() -> Iterator[FakeCloud]:
    """Register ``fake`` in the provider registry with a fresh cloud; undo on exit."""
    global CLOUD
    previous = CLOUD
    CLOUD = FakeCloud()
    registry.PROVIDERS["fake"] = ("Fake (tests)", "pools.providers.fake.FakeProvider")
    registry.provider_class.cache_clear()
    try:
        yield CLOUD
    finally:
        registry.PROVIDERS.pop("fake", None)
        registry.provider_class.cache_clear()
        CLOUD = previous
