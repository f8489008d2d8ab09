"""E2B through the official ``e2b`` SDK (sync API): Firecracker microVMs with pause/resume.

Fork safety: the SDK's HTTP transport does not survive ``fork()`` once a process has made a
call, so nothing here calls the SDK at import time, and ``e2b`` itself is imported inside the
methods (it is also slow to import, and the web process rarely needs it). Celery prefork
children make their own first call.

Every SDK exception leaves this module as a ``ProviderError``, through the table in
``e2b_errors``: bad key and unknown template are permanent; 429, 5xx, timeouts and connection
failures are transient. Messages name the sandbox or template and never contain the key.
With a ``timeout`` (see ``Provider``) every SDK request is bounded by it, and a call cut by
it reads "E2B did not answer within N s".

Exec on a paused sandbox: ``Sandbox.connect`` (the only way to get a handle for commands)
*resumes* a paused sandbox, and a resume starts billing again behind the platform's back.
``exec_command`` therefore looks the sandbox up first and refuses with a permanent
``ProviderError`` (status 409) when it is paused; the caller resumes explicitly. On a running
sandbox the connect extends its end to at least the command's timeout from now (never
shortens it), so the box does not expire under a running command.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pools.config import validate_e2b_config
from pools.providers import e2b_sizes
from pools.providers.base import (
    Capabilities,
    CommandTimeout,
    ConfigError,
    ExecResult,
    OutputCallback,
    Provider,
    ProviderError,
    SandboxHandle,
    SandboxInfo,
    SandboxSpec,
)
from pools.providers.e2b_box import E2BBox
from pools.providers.e2b_errors import tail as _tail
from pools.providers.e2b_errors import to_provider_error

if TYPE_CHECKING:
    from e2b import Sandbox

RUNNER_COMMAND = "nohup donmai agent run >/tmp/donmai-runner.log 2>&1 &"
LAUNCH_TIMEOUT_S = 60
MAX_TIMEOUT_S = 86_400  # E2B's longest sandbox lifetime
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 1000  # 100k sandboxes: a loop guard, not a product limit
_IDEMPOTENCY_KEY_RE = re.compile(r"[a-z0-9-]{1,255}")

E2B_CAPABILITIES = Capabilities(
    transport_model="dial-in",
    supports_fs_snapshot=True,
    supports_pause_resume=True,
    supports_capacity_query=False,
    max_concurrent=None,
    max_session_duration_seconds=None,
    os="linux",
    arch="x86_64",
    idle_cost_model="zero",
    billing_model="wall-clock",
    supports_gpu=False,
    supports_custom_network_policy=False,
    egress_default="allow-all",
    supports_exec=True,
    notes={
        "transport_model": "E2B envd exposes an exec endpoint",
        "supports_pause_resume": "full memory + FS, ~1s pause/resume",
        "supports_capacity_query": "FaaS-style, opaque capacity",
        "max_concurrent": "tier-gated by E2B",
        "max_session_duration_seconds": "tier-dependent",
        "idle_cost_model": "paused sandboxes cost $0",
        "billing_model": "while running",
    },
)


def sandbox_id_of(handle: SandboxHandle | str) -> str:
    return handle.sandbox_id if isinstance(handle, SandboxHandle) else str(handle)


def idempotency_key(request_id: str) -> str:
    """E2B accepts 1–255 of ``[a-z0-9-]``; a UUID string fits once lower-cased."""
    key = request_id.strip().lower()
    if _IDEMPOTENCY_KEY_RE.fullmatch(key):
        return key
    return hashlib.sha256(request_id.encode()).hexdigest()


class E2BProvider(E2BBox, Provider):
    """Metrics and files: ``E2BBox`` (e2b_box.py)."""

    kind = "e2b"
    label = "E2B"
    capabilities = E2B_CAPABILITIES
    runtime_kinds = ("npm", "python-pip", "http", "mcp-server", "a2a-protocol")
    requirement_kinds = ("long-running", "network-egress", "git", "full-history-clone")

    @classmethod
    def validate_config(cls, raw: Any) -> dict[str, Any]:
        return validate_e2b_config(raw)

    # -- plumbing ----------------------------------------------------------------------

    def _opts(self) -> dict[str, Any]:
        """SDK connection kwargs; the URLs only when set (empty means E2B itself)."""
        opts: dict[str, Any] = {"api_key": self.credential}
        if self.timeout is not None:
            opts["request_timeout"] = self.timeout
        if self.api_url:
            opts["api_url"] = self.api_url
        if self.sandbox_url:
            opts["sandbox_url"] = self.sandbox_url
        return opts

    def _endpoint(self) -> str:
        return self.api_url or "api.e2b.dev"

    # -- the contract ------------------------------------------------------------------

    def ping(self) -> float:
        from e2b import Sandbox  # slow import: on first use

        started = time.monotonic()
        try:
            Sandbox.list(limit=1, **self._opts()).next_items()
        except Exception as exc:
            raise self._provider_error(exc) from exc
        return round((time.monotonic() - started) * 1000, 1)

    def provision(self, config: Mapping[str, Any], spec: SandboxSpec) -> SandboxHandle:
        from e2b import Sandbox  # slow import: on first use

        try:
            cfg = self.validate_config(dict(config))
        except ConfigError as exc:
            raise ProviderError(f"The pool config is invalid: {exc}", permanent=True) from exc
        snapshot = cfg.get("snapshotId")
        template = snapshot or cfg["templateId"]
        envs = {**cfg.get("envVars", {}), **spec.env}
        metadata = {
            **spec.metadata,
            "rensei_org": spec.org_slug,
            "rensei_session": spec.session_id,
            "rensei_request": spec.request_id,
        }
        timeout = spec.timeout_seconds or cfg["timeoutSeconds"]
        # The create's answer has no sizes: get_info, unless this template's are known (see
        # e2b_sizes; the job then confirms them once the session is running).
        sizes_key = e2b_sizes.key(self._endpoint(), self.credential, template)
        sizes = e2b_sizes.known(sizes_key)
        sent = datetime.now(UTC)
        try:
            sandbox = Sandbox.create(
                template=template,
                timeout=timeout,
                metadata=metadata,
                envs=envs,
                lifecycle={"on_timeout": cfg["onTimeout"]},
                idempotency_key=idempotency_key(spec.request_id),
                **self._opts(),
            )
            if sizes is None:
                handle = e2b_sizes.described(sandbox, sizes_key, template)
        except Exception as exc:
            what = f"Snapshot '{snapshot}'" if snapshot else f"Template '{template}'"
            raise self._provider_error(exc, not_found=f"{what} not found in E2B") from exc
        if sizes is not None:
            handle = SandboxHandle(
                sandbox_id=sandbox.sandbox_id,
                template=sizes.template,
                vcpu=sizes.vcpu,
                memory_mb=sizes.memory_mb,
                started_at=sent,
                confirm=lambda: self._confirmed(sandbox, sizes_key, template),
            )
        if cfg["launchRunnerInline"]:
            result = self._run(sandbox, RUNNER_COMMAND, dict(spec.env), LAUNCH_TIMEOUT_S)
            if result.exit_code != 0:
                # The caller treats a permanent error as "no sandbox": do not leave one behind.
                self._kill_quietly(sandbox.sandbox_id)
                raise ProviderError(
                    f"Sandbox {sandbox.sandbox_id} started but launching `donmai agent run` "
                    f"failed (exit {result.exit_code}): {_tail(result.stderr or result.stdout)}",
                    permanent=True,
                )
        return handle

    def exec_command(
        self,
        handle: SandboxHandle | str,
        command: str,
        env: Mapping[str, str] | None = None,
        timeout: int = 600,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        sandbox_id = sandbox_id_of(handle)
        sandbox = self._connect_running(sandbox_id, keep_alive=timeout)
        return self._run(sandbox, command, dict(env or {}), timeout, on_output)

    def pause(self, handle: SandboxHandle | str) -> bool:
        from e2b import Sandbox  # slow import: on first use

        sandbox_id = sandbox_id_of(handle)
        try:
            return bool(Sandbox.pause(sandbox_id, **self._opts()))
        except Exception as exc:
            raise self._provider_error(exc, sandbox_id=sandbox_id) from exc

    def resume(
        self, handle: SandboxHandle | str, timeout_seconds: int | None = None
    ) -> SandboxHandle:
        from e2b import Sandbox  # slow import: on first use

        sandbox_id = sandbox_id_of(handle)
        try:
            # connect = resume in SDK 2.63 (201 when it was paused, 200 when running). The
            # id in the answer may differ from the one asked for (E2B #884): keep that one.
            sandbox = Sandbox.connect(sandbox_id, timeout=timeout_seconds, **self._opts())
            info = sandbox.get_info()
        except Exception as exc:
            raise self._provider_error(exc, sandbox_id=sandbox_id) from exc
        return SandboxHandle(
            sandbox_id=sandbox.sandbox_id,
            template=info.template_id,
            vcpu=int(info.cpu_count),
            memory_mb=int(info.memory_mb),
            started_at=_aware(info.started_at),
        )

    def terminate(self, handle: SandboxHandle | str) -> bool:
        from e2b import Sandbox  # slow import: on first use

        sandbox_id = sandbox_id_of(handle)
        try:
            return bool(Sandbox.kill(sandbox_id, **self._opts()))
        except Exception as exc:
            raise self._provider_error(exc, sandbox_id=sandbox_id) from exc

    def status(self, handle: SandboxHandle | str) -> SandboxInfo | None:
        from e2b import Sandbox, SandboxNotFoundException  # slow import: on first use

        sandbox_id = sandbox_id_of(handle)
        try:
            info = Sandbox.get_info(sandbox_id, **self._opts())
        except SandboxNotFoundException:
            return None
        except Exception as exc:
            raise self._provider_error(exc, sandbox_id=sandbox_id) from exc
        return _info(info)

    def list_sandboxes(
        self,
        metadata: Mapping[str, str] | None = None,
        states: Sequence[str] = ("running", "paused"),
    ) -> list[SandboxInfo]:
        from e2b import Sandbox, SandboxQuery, SandboxState  # slow import: on first use

        query = SandboxQuery(
            metadata=dict(metadata) if metadata else None,
            state=[SandboxState(s) for s in states] or None,
        )
        out: list[SandboxInfo] = []
        try:
            paginator = Sandbox.list(query=query, limit=LIST_PAGE_SIZE, **self._opts())
            pages = 0
            while paginator.has_next and pages < MAX_LIST_PAGES:
                out.extend(_info(item) for item in paginator.next_items())
                pages += 1
        except Exception as exc:
            raise self._provider_error(exc) from exc
        return out

    # -- helpers -----------------------------------------------------------------------

    def _confirmed(self, sandbox: Sandbox, sizes_key: str, template: str) -> SandboxHandle:
        try:
            return e2b_sizes.described(sandbox, sizes_key, template)
        except Exception as exc:
            raise self._provider_error(exc, sandbox_id=sandbox.sandbox_id) from exc

    def _connect_running(self, sandbox_id: str, keep_alive: int) -> Sandbox:
        """A handle for commands, without resuming a paused sandbox (see module doc).

        Connecting to a running sandbox moves its end to at least ``keep_alive`` seconds
        from now (E2B only ever extends it there), so the box outlives the command.
        """
        from e2b import Sandbox  # slow import: on first use

        try:
            info = Sandbox.get_info(sandbox_id, **self._opts())
            if str(_state(info.state)) == "paused":
                raise ProviderError(
                    f"Sandbox {sandbox_id} is paused: resume it before running a command.",
                    permanent=True,
                    status_code=409,
                )
            seconds = min(keep_alive, MAX_TIMEOUT_S) if keep_alive > 0 else None
            return Sandbox.connect(sandbox_id, timeout=seconds, **self._opts())
        except ProviderError:
            raise
        except Exception as exc:
            raise self._provider_error(exc, sandbox_id=sandbox_id) from exc

    def _run(
        self,
        sandbox: Sandbox,
        command: str,
        env: dict[str, str],
        timeout: int,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        from e2b import (  # slow import: on first use
            CommandExitException,
            SandboxNotRunningException,
            SandboxUnreachableException,
            TimeoutException,
        )

        try:
            if on_output is None:
                result = sandbox.commands.run(command, envs=env or None, timeout=timeout)
                return ExecResult(result.exit_code, result.stdout or "", result.stderr or "")
            # The SDK calls these as envd's data events arrive (decoded, never a split
            # character); not retaining keeps a chatty command's output out of memory.
            streamed = sandbox.commands.run(
                command,
                envs=env or None,
                timeout=timeout,
                on_stdout=lambda text: on_output("stdout", text),
                on_stderr=lambda text: on_output("stderr", text),
                retain_output=False,
            )
            return ExecResult(streamed.exit_code, "", "")
        except CommandExitException as exc:
            # A non-zero exit is an answer, not a failure of the provider.
            return ExecResult(exc.exit_code, exc.stdout or "", exc.stderr or "")
        except (SandboxNotRunningException, SandboxUnreachableException) as exc:
            raise self._provider_error(exc, sandbox_id=sandbox.sandbox_id) from exc
        except TimeoutException as exc:
            raise CommandTimeout(
                f"The command did not finish within {timeout} s in sandbox "
                f"{sandbox.sandbox_id} (or the sandbox was paused while it ran)."
            ) from exc
        except Exception as exc:
            raise self._provider_error(exc, sandbox_id=sandbox.sandbox_id) from exc

    def _kill_quietly(self, sandbox_id: str) -> None:
        with contextlib.suppress(ProviderError):
            self.terminate(sandbox_id)

    def _provider_error(
        self, exc: BaseException, *, sandbox_id: str | None = None, not_found: str | None = None
    ) -> ProviderError:
        """Map an SDK (or transport) exception to one ``ProviderError`` (see e2b_errors)."""
        return to_provider_error(
            exc,
            sandbox_id=sandbox_id,
            not_found=not_found,
            endpoint=self._endpoint(),
            bound=self.timeout,
        )


# -- module helpers --------------------------------------------------------------------


def _info(info: Any) -> SandboxInfo:
    return SandboxInfo(
        sandbox_id=info.sandbox_id,
        template=info.template_id,
        state=str(_state(info.state)),
        metadata=dict(info.metadata or {}),
        started_at=_aware(info.started_at) if info.started_at else None,
        end_at=_aware(info.end_at) if info.end_at else None,
        vcpu=int(info.cpu_count or 0),
        memory_mb=int(info.memory_mb or 0),
    )


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
