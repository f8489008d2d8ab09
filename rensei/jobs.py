"""Provider jobs on Celery: the one retry policy and give-up path.

A job body is a plain function of ids. When the provider fails in a way worth trying again
(a 429, a 503, a lost answer) it raises ``Transient``, carrying the provider's Retry-After
when there was one. ``ProviderTask`` turns that into Celery's retry with a countdown
(``retry_countdown``); once the task's ``max_retries`` are spent it calls the task's
``give_up`` hook instead, with the same arguments, the last error and the number of tries.
Any other exception is the job's bug and fails the task as usual. Nothing here knows what
a session or a pool is, so every app's jobs can use it::

    provision_session = provider_task(
        "sessions.tasks.provision_session", jobs.provision,
        give_up=jobs.give_up_provision, max_retries=4,
    )
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.contrib.django.task import DjangoTask

from rensei import ops
from rensei.logging import bound, session_id

RETRY_AFTER_FLOOR = 0.5  # seconds: a Retry-After of 0 must not turn into a busy loop
RETRY_AFTER_CAP = 300.0  # a provider asking for more is not waited for longer than this
BACKOFF_BASE = 2.0  # without Retry-After: 2, 4, 8, 16… seconds, plus up to 1 s of jitter
BACKOFF_CAP = 60.0


class Transient(Exception):
    """Try the job again later; ``retry_after`` is the wait the provider asked for."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


# give_up(*job_args, error=…, tries=…): what a job does once retrying is over.
GiveUp = Callable[..., None]


def retry_countdown(retries: int, retry_after: float | None = None) -> float:
    """Seconds before try ``retries + 2``: what the provider asked for (within bounds), else
    exponential backoff with jitter, so a burst of failed jobs does not come back at once."""
    if retry_after:
        return min(max(float(retry_after), RETRY_AFTER_FLOOR), RETRY_AFTER_CAP)
    return min(BACKOFF_CAP, BACKOFF_BASE * 2**retries) + random.uniform(0, 1)


def _no_give_up(*args: Any, error: Transient, tries: int, **kwargs: Any) -> None:
    raise error


class ProviderTask(DjangoTask):
    """Retries a job's ``Transient`` errors, then gives up through ``give_up``."""

    abstract = True
    give_up: GiveUp = staticmethod(_no_give_up)
    # Whether the first argument is a session id, for the log lines' ``session_id``.
    session_job: bool = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Jobs take the id of what they act on first; log lines of the job carry it.
        first = args[0] if args else None
        subject = str(first) if self.session_job and isinstance(first, int) else ""
        with bound(session_id, subject):
            return self._run(*args, **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Transient as exc:
            _count_provider_error(exc)
            # Read here, outside the body's call: this is the request the worker (or
            # ``apply``) pushed, with the delivery's retry count.
            retries = int(self.request.retries or 0)
            if retries < (self.max_retries or 0):
                ops.bump(ops.JOB_RETRY, self.name)
                raise self.retry(
                    countdown=retry_countdown(retries, exc.retry_after), exc=exc
                ) from None
            self.give_up(*args, error=exc, tries=retries + 1, **kwargs)
            return None


def _count_provider_error(exc: Transient) -> None:
    """The provider's status code behind a ``Transient`` (the error it was raised from or
    during), "none" for an answer that never came (a timeout, a dropped connection)."""
    cause = exc.__cause__ or exc.__context__
    status = getattr(cause, "status_code", None)
    ops.bump(ops.PROVIDER_ERROR, str(status) if status else "none")


def provider_task(
    name: str, job: Callable[..., Any], *, give_up: GiveUp, max_retries: int
) -> ProviderTask:
    """Register ``job`` itself as the Celery task ``name`` on ``ProviderTask``."""
    task: ProviderTask = shared_task(
        name=name, base=ProviderTask, max_retries=max_retries, give_up=staticmethod(give_up)
    )(job)
    return task
