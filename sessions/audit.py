"""How the audit log names a session, and the rows its jobs write."""

from __future__ import annotations

from typing import Any

from rensei.audit import record
from rensei.models import Channel
from sessions.models import Session


def describe(session: Session) -> str:
    """The audit target: ``session 12 (ENG-142)``."""
    issue = session.issue.key if session.issue_id and session.issue else ""
    return f"session {session.pk}" + (f" ({issue})" if issue else "")


def audit(session: Session, action: str, **detail: Any) -> None:
    """An audit row written by a job or the reconciler (no actor: the job channel)."""
    record(
        org=session.org,
        action=action,
        target=describe(session),
        channel=Channel.JOB,
        detail=detail,
    )
