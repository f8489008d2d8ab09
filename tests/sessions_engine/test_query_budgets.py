"""Query budgets of the hot path: the API's create and the provision job.

Counted as production runs them (a transactional test: the outermost ``atomic`` is the real
transaction, nested ones would show as SAVEPOINT statements), against the emulator through
the real SDK. Budgets: at most 8 statements each, plus the one outbox INSERT per event the
step writes (session.created for the create, session.running for the job). The job's
publish is recorded instead of sent (the intent claim written at publish belongs to the
broker hop, not to the request).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.models import Event
from pools.providers import e2b_sizes
from rensei.crypto import encrypt
from rensei.models import Channel, Credential, Organization
from rensei.tokens import create_token
from sessions import enqueue, jobs
from sessions.models import RunningInterval, Session, SessionTransition
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = 8
BODY = {"issue": {"key": "ENG-1"}, "runtime_kinds": ["npm"], "requirement_kinds": ["git"]}


def split(captured: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(statements other than outbox INSERTs, outbox INSERTs). SQLite's BEGIN IMMEDIATE and
    COMMIT are left out: PostgreSQL's go through the driver and are never captured."""
    sql = [q["sql"] for q in captured if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    events = [s for s in sql if s.startswith('INSERT INTO "events_event"')]
    return [s for s in sql if s not in events], events


@pytest.fixture
def setup(org_a: Organization, e2b_settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    ensure_rate_cards()
    make_pool(org_a, "e2b-1", provider="e2b", order=1)
    Credential.objects.create(
        org=org_a,
        provider="e2b",
        secret_encrypted=encrypt("e2b_query_budget_key"),
        last_four="_key",
    )
    _, token = create_token(org_a, "dispatcher", None, Channel.CLI)
    sent: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(enqueue, "_publish", lambda name, args: sent.append((name, args)))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def create() -> Any:
        return client.post("/api/v1/sessions", json.dumps(BODY), content_type="application/json")

    warm = create()  # warm-up: the issue is made, the token stamped
    assert warm.status_code == 202
    # The template's sizes known, as for every provision but a worker's first: the job
    # records the sandbox without asking E2B first and confirms it after (the costlier path).
    e2b_sizes.forget()
    jobs.provision(warm.json()["id"])
    return create, sent


def test_api_create_and_provision_job_stay_within_their_query_budgets(setup: Any) -> None:
    create, sent = setup
    with CaptureQueriesContext(connection) as api:
        resp = create()
    assert resp.status_code == 202, resp.content
    sid = resp.json()["id"]
    statements, events = split(api.captured_queries)
    assert len(statements) <= BUDGET, "\n".join(statements)
    assert len(events) == 1  # session.created
    assert not [s for s in statements if "SAVEPOINT" in s]
    assert sent[-1] == (enqueue.PROVISION, (sid,))

    with CaptureQueriesContext(connection) as job:
        jobs.provision(sid)
    statements, events = split(job.captured_queries)
    assert len(statements) <= BUDGET, "\n".join(statements)
    assert len(events) == 1  # session.running
    # The session is read once; the state changes are UPDATEs with no SELECT before them.
    reads = [s for s in statements if s.startswith('SELECT "agent_sessions_session"')]
    assert len(reads) == 1
    # The org and its key come with that read, not in queries of their own.
    alone = ('SELECT "rensei_organization"', 'SELECT "rensei_credential"', "SAVEPOINT")
    assert not [s for s in statements if s.startswith(alone)]

    # Nothing was given up for the savings: same state, timeline, events, interval, answer.
    session = Session.objects.get(pk=sid)
    assert session.state == "running" and session.sandbox_id and session.vcpu
    moves = list(
        SessionTransition.objects.filter(session=session)
        .order_by("pk")
        .values_list("from_state", "to_state", "note")
    )
    assert [m[:2] for m in moves] == [
        ("", "queued"),
        ("queued", "provisioning"),
        ("provisioning", "running"),
    ]
    assert moves[0][2] == "created via api" and moves[1][2] == "dispatched to e2b-1"
    created = Event.objects.get(session_id=sid, type="session.created")
    assert created.data["session"]["state"] == "queued"
    assert created.data["session"]["pool"] is None
    running = Event.objects.get(session_id=sid, type="session.running")
    assert running.data["session"]["sandbox_id"] == session.sandbox_id
    assert running.data["session"]["cost_so_far"] == resp.json()["cost_so_far"]
    assert RunningInterval.objects.filter(session=session, ended_at__isnull=True).count() == 1
    answer = resp.json()
    assert answer["state"] == "provisioning" and answer["pool"] == "e2b-1"
    assert answer["issue"]["key"] == "ENG-1"
    assert answer["routing"] == {"skipped": [], "chosen": "e2b-1"}
