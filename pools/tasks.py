"""Pool health check: provision a sandbox from the pool's config, `which donmai`, terminate.

The job takes the check's id only. It claims the check with a conditional UPDATE, so a second
delivery of the same job is a no-op (unless the first worker died: a claim older than
``STALE_AFTER`` may be taken over, and the sandbox it recorded is killed first). The sandbox is
always terminated in ``finally``; its timeout is capped and it is killed on timeout, so even a
worker crash cannot leave it running for long.

No SDK call happens at import time or outside the task body (see pools/providers/e2b.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from events.outbox import emit
from events.types import POOL_HEALTH_CHANGED
from pools.config import is_base_template
from pools.models import CapacityPool, HealthStatus, PoolHealthCheck
from pools.providers import for_pool
from pools.providers.base import ConfigError, Provider, ProviderError, SandboxSpec
from rensei import audit

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=15)
CHECK_SANDBOX_TIMEOUT_S = 300  # a health-check sandbox never outlives this
EXEC_TIMEOUT_S = 60
CHECK_COMMAND = "which donmai"
MAX_OUTPUT = 4000


def start_check(pool: CapacityPool, *, user: Any = None, channel: str = "web") -> PoolHealthCheck:
    """Record a new check and show the pool as "Checking". The caller runs or enqueues it."""
    check = PoolHealthCheck.objects.create(
        pool=pool,
        status=HealthStatus.RUNNING,
        requested_by=user if user is not None and user.is_authenticated else None,
        channel=channel,
    )
    CapacityPool.objects.filter(pk=pool.pk).update(health_status=HealthStatus.RUNNING)
    pool.health_status = HealthStatus.RUNNING
    return check


@shared_task
def check_pool(check_id: int) -> str | None:
    """Run one health check; returns the final status, or None when another run has it."""
    now = timezone.now()
    claimed = (
        PoolHealthCheck.objects.filter(pk=check_id, status=HealthStatus.RUNNING)
        .filter(Q(run_started_at__isnull=True) | Q(run_started_at__lt=now - STALE_AFTER))
        .update(run_started_at=now)
    )
    if not claimed:
        return None
    check = PoolHealthCheck.objects.select_related("pool__org", "requested_by").get(pk=check_id)
    pool = check.pool
    started = time.monotonic()
    timings: dict[str, int] = {}
    try:
        provider = for_pool(pool)
        if check.sandbox_id:
            # Taking over from a worker that died mid-check: clean up what it started.
            _terminate_quietly(provider, check.sandbox_id)
        passed, output = _run(provider, pool, check, timings)
    except (ProviderError, ConfigError, LookupError) as exc:
        passed, output = False, f"Could not check the pool: {exc}"
    except Exception:
        log.exception("health check %s of pool %s crashed", check_id, pool.pk)
        passed, output = False, "The health check crashed; see the worker log."
    status = HealthStatus.PASSING if passed else HealthStatus.FAILING
    duration = int((time.monotonic() - started) * 1000)
    finished = timezone.now()
    output = output[:MAX_OUTPUT]
    updated = PoolHealthCheck.objects.filter(pk=check_id, run_started_at=now).update(
        status=status, output=output, finished_at=finished, duration_ms=duration, timings=timings
    )
    if not updated:
        return None  # a later run took this check over; its answer wins
    with transaction.atomic():
        previous = (
            PoolHealthCheck.objects.filter(pool=pool, finished_at__lt=finished)
            .exclude(pk=check_id)
            .exclude(status=HealthStatus.RUNNING)
            .order_by("-finished_at")
            .values_list("status", flat=True)
            .first()
        )
        # Only a newer check may overwrite the pool's badge (two checks can overlap).
        won = (
            CapacityPool.objects.filter(pk=pool.pk)
            .exclude(health_checked_at__gt=finished)
            .update(
                health_status=status,
                health_checked_at=finished,
                health_output=output,
                health_duration_ms=duration,
            )
        )
        if won and previous != status:
            _health_changed(pool, status, previous, finished, output)
    audit.record(
        org=pool.org,
        action="pool.checked",
        target=str(pool),
        actor=check.requested_by,
        channel=check.channel,
        detail={"check_id": check_id, "result": str(status), "summary": output.split("\n")[0]},
    )
    return str(status)


def _health_changed(
    pool: CapacityPool, status: str, previous: str | None, at: datetime, output: str
) -> None:
    """``pool.health_changed``, in the transaction that sets the pool's badge."""
    emit(
        pool.org_id,
        POOL_HEALTH_CHANGED,
        {
            "pool": {
                "id": pool.pk,
                "name": pool.name,
                "provider": pool.provider,
                "enabled": pool.enabled,
            },
            "health": str(status),
            "previous": str(previous) if previous else None,
            "checked_at": at,
            "summary": output.split("\n")[0][:300],
        },
        at=at,
    )


def _run(
    provider: Provider, pool: CapacityPool, check: PoolHealthCheck, timings: dict[str, int]
) -> tuple[bool, str]:
    config = provider.validate_config(pool.config)
    where = (
        f"snapshot {config['snapshotId']}"
        if config.get("snapshotId")
        else f"template {config['templateId']}"
    )
    # The pool's template, snapshot and env; but a short, self-killing sandbox without the
    # runner: the check only asks whether donmai is there.
    config = {
        **config,
        "launchRunnerInline": False,
        "onTimeout": "kill",
        "timeoutSeconds": min(int(config["timeoutSeconds"]), CHECK_SANDBOX_TIMEOUT_S),
    }
    spec = SandboxSpec(
        session_id=f"health-check-{check.pk}",
        request_id=str(uuid.uuid4()),
        org_slug=pool.org.slug,
        metadata={"rensei_purpose": "health-check", "rensei_pool": str(pool.pk)},
    )
    t0 = time.monotonic()
    try:
        handle = provider.provision(config, spec)
    except ProviderError as exc:
        timings["provision_ms"] = _ms(t0)
        return False, f"Could not start a sandbox from {where}: {exc}"
    timings["provision_ms"] = _ms(t0)
    PoolHealthCheck.objects.filter(pk=check.pk).update(sandbox_id=handle.sandbox_id)
    result = None
    exec_error = ""
    try:
        t1 = time.monotonic()
        try:
            result = provider.exec_command(handle, CHECK_COMMAND, {}, timeout=EXEC_TIMEOUT_S)
        except ProviderError as exc:
            exec_error = str(exc)
        timings["exec_ms"] = _ms(t1)
    finally:
        t2 = time.monotonic()
        terminate_error = ""
        try:
            provider.terminate(handle)
        except ProviderError as exc:
            terminate_error = f"\nCould not terminate sandbox {handle.sandbox_id}: {exc}"
        timings["terminate_ms"] = _ms(t2)
    if result is None:
        text = f"Sandbox {handle.sandbox_id} started but `{CHECK_COMMAND}` failed: {exec_error}"
        return False, text + terminate_error
    timing_line = (
        f"provision {timings['provision_ms']} ms, exec {timings['exec_ms']} ms, "
        f"terminate {timings['terminate_ms']} ms"
    )
    if result.exit_code == 0 and result.stdout.strip():
        text = f"donmai found at {result.stdout.strip()} in {where} ({timing_line})"
        return not terminate_error, text + terminate_error
    if result.exit_code == 1:
        hint = (
            " The bare base template has no donmai binary: build a custom template."
            if is_base_template(config)
            else ""
        )
        text = f"donmai not found in {where} (`{CHECK_COMMAND}` exited 1).{hint} ({timing_line})"
        return False, text + terminate_error
    detail = (result.stderr or result.stdout).strip()[-500:]
    text = (
        f"`{CHECK_COMMAND}` exited {result.exit_code} in {where}"
        f"{': ' + detail if detail else ''} ({timing_line})"
    )
    return False, text + terminate_error


def _terminate_quietly(provider: Provider, sandbox_id: str) -> None:
    try:
        provider.terminate(sandbox_id)
    except ProviderError as exc:
        log.warning("could not terminate stale health-check sandbox %s: %s", sandbox_id, exc)


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
