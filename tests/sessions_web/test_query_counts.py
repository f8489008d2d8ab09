"""Query counts stay flat as sessions grow: the list page, the dashboard, the API list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pools.models import CapacityPool
from sessions.models import SessionState
from tests.factories import CommandRunFactory, RunningIntervalFactory
from tests.sessions_web.conftest import T0, make_session, standard_timeline

pytestmark = pytest.mark.django_db


def grow(org, count: int) -> None:  # type: ignore[no-untyped-def]
    pools = [
        CapacityPool.objects.get_or_create(org=org, name=f"pool-{i}", defaults={"order": i})[0]
        for i in range(3)
    ]
    states = [SessionState.RUNNING, SessionState.PAUSED, SessionState.QUEUED]
    for i in range(count):
        make_session(org, states[i % 3], issue=f"ENG-{i % 7}", pool=pools[i % 3])


def queries(fn) -> int:  # type: ignore[no-untyped-def]
    fn()  # warm up: the first request also writes the login session and token use time
    with CaptureQueriesContext(connection) as ctx:
        resp = fn()
    assert resp.status_code in (200, 286), resp.status_code
    return len(ctx.captured_queries)


@pytest.mark.parametrize(
    "url",
    [
        "/sessions/",
        "/sessions/?state=running&state=paused&sort=issue",
        "/sessions/?page=2",
        "/",
    ],
)
def test_pages_are_flat(client_as, alice, org_a, url: str) -> None:  # type: ignore[no-untyped-def]
    c = client_as(alice)
    grow(org_a, 30)
    small = queries(lambda: c.get(url))
    small_htmx = queries(lambda: c.htmx("get", url))
    grow(org_a, 100)
    assert queries(lambda: c.get(url)) == small
    assert queries(lambda: c.htmx("get", url)) == small_htmx


def test_api_list_is_flat(api, org_a) -> None:  # type: ignore[no-untyped-def]
    grow(org_a, 10)
    small = queries(lambda: api.get("/api/v1/sessions", {"limit": 100}))
    grow(org_a, 90)
    resp = api.get("/api/v1/sessions", {"limit": 100})
    assert len(resp.json()["results"]) == 100
    assert queries(lambda: api.get("/api/v1/sessions", {"limit": 100})) == small


def test_detail_is_flat_in_timeline_intervals_and_runs(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    s = make_session(org_a, SessionState.RUNNING, transitions=standard_timeline())
    c = client_as(alice)

    def add(n: int) -> None:
        for i in range(n):
            RunningIntervalFactory.create(
                session=s,
                started_at=T0 + timedelta(hours=i),
                ended_at=T0 + timedelta(hours=i, minutes=1),
            )
            CommandRunFactory.create(session=s, command=f"echo {i}", created_by=alice)

    add(2)
    small = queries(lambda: c.get(f"/sessions/{s.pk}/"))
    add(20)
    assert queries(lambda: c.get(f"/sessions/{s.pk}/")) == small
