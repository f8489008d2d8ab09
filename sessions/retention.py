"""Billing records are never deleted: a session that ran keeps its intervals and command runs.

A running interval is the meter (closing one bills it, see sessions.intervals); deleting it,
or a session with its intervals and command runs, would make running time unbillable and
leave a live sandbox no one owns. The database refuses deleting a session with ledger rows
(``CostEvent.session`` is PROTECT); these receivers refuse the rest on every ORM path: an
instance's ``delete()``, a QuerySet's ``delete()``, and a cascade from an organization.
(Django sends ``pre_delete`` per row on all of them.) The admin hides delete for such rows
(sessions/admin.py) and offers "Terminate" instead, which closes and bills through the state
machine and is audited. Connected in ``AgentSessionsConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import ProtectedError
from django.db.models.signals import pre_delete

from sessions.models import RunningInterval, Session


class BillingRecordsKept(ProtectedError):
    """A delete that would lose billing records; terminate the session instead."""


def has_billing_records(session: Session) -> bool:
    """True when the session ran (intervals) or ran commands: it is kept forever."""
    return session.intervals.exists() or session.command_runs.exists()


def refuse_session_delete(sender: type[Session], instance: Session, **kwargs: Any) -> None:
    if has_billing_records(instance):
        raise BillingRecordsKept(
            f"Session {instance.pk} has running intervals or command runs and is kept "
            "for billing; terminate it instead of deleting it.",
            {instance},
        )


def refuse_interval_delete(
    sender: type[RunningInterval], instance: RunningInterval, **kwargs: Any
) -> None:
    raise BillingRecordsKept(
        f"Running interval {instance.pk} is a billing record and is never deleted; "
        "closing it (pause or terminate the session) bills it.",
        {instance},
    )


def connect() -> None:
    pre_delete.connect(refuse_session_delete, sender=Session, dispatch_uid="sessions.keep")
    pre_delete.connect(
        refuse_interval_delete, sender=RunningInterval, dispatch_uid="sessions.keep_intervals"
    )
