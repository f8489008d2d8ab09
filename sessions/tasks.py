"""Celery tasks of the sessions app: thin wrappers over ``sessions.jobs`` and the reconciler.

Arguments are ids only. acks_late and reject_on_worker_lost are global, so a worker that
dies mid-task gets the task redelivered; every job starts with a conditional update and is
safe to run twice. A job returning a wait means "transient provider error, try again":
that becomes ``self.retry(countdown=…)``; the job itself decides what happens once
``can_retry`` is False.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from sessions import jobs


def enqueue(task: Any, *args: Any) -> None:
    """``task.delay_on_commit(*args)``: sent when the surrounding transaction commits (at
    once outside one), never for a rolled-back change."""
    task.delay_on_commit(*args)


def _retry_args(task: Any) -> dict[str, Any]:
    retries = task.request.retries or 0
    return {"retry": retries, "can_retry": retries < (task.max_retries or 0)}


@shared_task(bind=True, max_retries=jobs.TRANSIENT_RETRIES)
def provision_session(self: Any, session_id: int) -> None:
    wait = jobs.provision(session_id, **_retry_args(self))
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task(bind=True, max_retries=jobs.OTHER_RETRIES)
def pause_session(self: Any, session_id: int) -> None:
    wait = jobs.pause(session_id, **_retry_args(self))
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task(bind=True, max_retries=jobs.OTHER_RETRIES)
def resume_session(self: Any, session_id: int) -> None:
    wait = jobs.resume(session_id, **_retry_args(self))
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task(bind=True, max_retries=jobs.OTHER_RETRIES)
def terminate_session(self: Any, session_id: int) -> None:
    wait = jobs.terminate(session_id, **_retry_args(self))
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task
def exec_command(run_id: int) -> None:
    jobs.exec_command(run_id)


@shared_task
def reconcile_all() -> int:
    """Beat, every minute: one reconcile job per org that has pools."""
    from sessions.reconcile import orgs_to_reconcile

    org_ids = orgs_to_reconcile()
    for org_id in org_ids:
        reconcile_org.delay(org_id)
    return len(org_ids)


@shared_task
def reconcile_org(org_id: int) -> dict[str, int]:
    """One org's pass (also the Capacity page's "Reconcile now")."""
    from sessions.reconcile import reconcile_org as run

    return run(org_id)
