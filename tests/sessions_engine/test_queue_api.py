"""A waiting session says why and where in line: the API's ``queue`` field and the page tag."""

from __future__ import annotations

from typing import Any

import pytest
from django.template import Context, Template

from pools.providers.fake import FakeCloud
from rensei.models import Channel, Organization
from rensei.tokens import create_token
from sessions import jobs, services
from sessions.api_urls import openapi_document
from sessions.models import Session, SessionState
from tests.sessions_engine.conftest import make_pool
from tests.sessions_web.conftest import ApiClient
from tests.sessions_web.test_openapi import Checker

S = SessionState
pytestmark = pytest.mark.django_db
BODY = {"issue": {"key": "ENG-7"}, "runtime_kinds": ["npm"], "requirement_kinds": ["git"]}


@pytest.fixture
def api(org_a: Organization) -> ApiClient:
    _, plaintext = create_token(org_a, "dispatcher", None, Channel.CLI)
    return ApiClient(plaintext)


def start(org: Organization) -> Session:
    session = services.create_session(
        org, issue_key="ENG-1", runtime_kinds=["npm"], requirement_kinds=["git"]
    )
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == S.RUNNING
    return session


def test_the_api_says_why_a_session_waits_and_where_in_line(
    api: ApiClient, org_a: Organization, cloud: FakeCloud, rate_cards: None
) -> None:
    check = Checker(openapi_document())
    make_pool(org_a, "capped", concurrency_cap=1)
    sleeper = start(org_a)
    assert services.request_pause(sleeper)
    jobs.pause(sleeper.pk)
    holder = start(org_a)

    first = check("/api/v1/sessions", "post", api.post("/api/v1/sessions", BODY))
    second = check("/api/v1/sessions", "post", api.post("/api/v1/sessions", BODY))
    assert first["state"] == second["state"] == "queued"
    assert first["queue"] == {
        "kind": "start",
        "reason": "capped is at its cap (1/1)",
        "position": 1,
        "waiting_for": ["capped"],
        "since": first["created_at"],
        "text": "capped is at its cap (1/1); 1st in line",
    }
    assert second["queue"]["text"] == "capped is at its cap (1/1); 2nd in line"

    # A resume at the cap is accepted and waits paused, behind the two queued sessions.
    answer = api.post(f"/api/v1/sessions/{sleeper.pk}/resume")
    assert answer.status_code == 202
    assert answer.json() == {"id": sleeper.pk, "state": "paused", "accepted": True}
    one = "/api/v1/sessions/{session_id}"
    waiting = check(one, "get", api.get(f"/api/v1/sessions/{sleeper.pk}"))
    assert waiting["state"] == "paused"
    assert waiting["queue"]["kind"] == "resume"
    assert waiting["queue"]["text"] == "Resume requested: capped is at its cap (1/1); 3rd in line"

    listed = check("/api/v1/sessions", "get", api.get("/api/v1/sessions"))
    by_id = {item["id"]: item["queue"] for item in listed["results"]}
    assert by_id[holder.pk] is None
    assert [by_id[i]["position"] for i in (first["id"], second["id"], sleeper.pk)] == [1, 2, 3]

    # The slot frees: the oldest request (the first queued session) gets it.
    assert services.request_terminate(holder)
    jobs.terminate(holder.pk)
    after = api.get(f"/api/v1/sessions/{second['id']}").json()
    assert after["queue"]["text"] == "capped is at its cap (1/1); 1st in line"
    assert api.get(f"/api/v1/sessions/{first['id']}").json()["queue"] is None


def test_the_openapi_document_describes_the_queue_field() -> None:
    doc = openapi_document()
    session = doc["components"]["schemas"]["Session"]
    assert "queue" in session["required"]
    assert session["properties"]["queue"] == {
        "anyOf": [{"$ref": "#/components/schemas/QueueStatus"}, {"type": "null"}]
    }
    queue = doc["components"]["schemas"]["QueueStatus"]
    assert set(queue["required"]) == {"kind", "reason", "position", "waiting_for", "since", "text"}
    resume = doc["paths"]["/api/v1/sessions/{session_id}/resume"]["post"]["description"]
    assert "soft cap" in resume


def test_the_page_tag_renders_the_same_words(
    org_a: Organization, cloud: FakeCloud, rate_cards: None
) -> None:
    make_pool(org_a, "capped", concurrency_cap=1)
    holder = start(org_a)
    first = services.create_session(
        org_a, issue_key="ENG-2", runtime_kinds=["npm"], requirement_kinds=["git"]
    )
    second = services.create_session(
        org_a, issue_key="ENG-3", runtime_kinds=["npm"], requirement_kinds=["git"]
    )
    tag = Template("{% load sessions_extras %}{% queue_status s %}")

    def render(session: Any) -> str:
        return " ".join(tag.render(Context({"s": session})).split())

    html = render(second)
    assert "Waiting for a slot:</strong> capped is at its cap (1/1); 2nd in line." in html
    assert 'data-queue-position="2"' in html
    assert "1st in line" in render(first)
    assert render(holder) == ""


def test_resume_on_the_page_at_the_cap_says_it_waits(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, client_as: Any, alice: Any
) -> None:
    make_pool(org_a, "capped", concurrency_cap=1)
    sleeper = start(org_a)
    assert services.request_pause(sleeper)
    jobs.pause(sleeper.pk)
    start(org_a)
    html = client_as(alice).htmx("post", f"/sessions/{sleeper.pk}/resume/").content.decode()
    sleeper.refresh_from_db()
    assert sleeper.state == S.PAUSED and sleeper.resume_requested_at is not None
    assert f"Resume requested: session {sleeper.pk} waits for a slot in its pool." in html
    assert "capped is at its cap (1/1); 1st in line" in " ".join(html.split())
