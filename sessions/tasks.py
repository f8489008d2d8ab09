"""Celery tasks of the sessions app: the job bodies of ``sessions.jobs`` and the reconciler.

Arguments are ids only. acks_late and reject_on_worker_lost are global, so a worker that
dies mid-task gets the task redelivered; every job starts with a conditional update and is
safe to run twice. The lifecycle jobs run on ``rensei.jobs.ProviderTask``: a ``Transient``
error is retried (the provider's Retry-After, else backoff), and once the retries are spent
the job's ``give_up_*`` decides what happens. Others send these by name
(``sessions.enqueue``), so the names are the contract.
"""

from __future__ import annotations

from celery import shared_task

from rensei.jobs import provider_task
from sessions import cpu_samples, enqueue, jobs, jobs_exec, policies, reconcile

provision_session = provider_task(
    enqueue.PROVISION,
    jobs.provision,
    give_up=jobs.give_up_provision,
    max_retries=jobs.TRANSIENT_RETRIES,
)
pause_session = provider_task(
    enqueue.PAUSE, jobs.pause, give_up=jobs.give_up_pause, max_retries=jobs.OTHER_RETRIES
)
resume_session = provider_task(
    enqueue.RESUME, jobs.resume, give_up=jobs.give_up_resume, max_retries=jobs.OTHER_RETRIES
)
terminate_session = provider_task(
    enqueue.TERMINATE,
    jobs.terminate,
    give_up=jobs.give_up_terminate,
    max_retries=jobs.OTHER_RETRIES,
)
# Never retried: a command may have side effects (see sessions.jobs_exec).
exec_command = shared_task(name=enqueue.EXEC)(jobs_exec.exec_command)


@shared_task(name=enqueue.RECONCILE_ALL)
def reconcile_all() -> int:
    """Beat, every minute: one reconcile job per org that has pools."""
    org_ids = reconcile.orgs_to_reconcile()
    for org_id in org_ids:
        reconcile_org.delay(org_id)
    return len(org_ids)


@shared_task(name=enqueue.RECONCILE_ORG)
def reconcile_org(org_id: int) -> dict[str, int]:
    """One org's pass (also the Capacity page's "Reconcile now")."""
    return reconcile.reconcile_org(org_id)


@shared_task(name="sessions.tasks.sample_cpu")
def sample_cpu() -> int:
    """Beat, every minute: the latest CPU sample of each running sandbox, for the sessions
    list (sessions/cpu_samples.py)."""
    return cpu_samples.sample_running()


@shared_task(name="sessions.tasks.apply_policies")
def apply_policies() -> dict[str, int]:
    """Beat, every minute: the pools' idle, paused-too-long and age policies (one pass)."""
    return policies.apply_policies()
