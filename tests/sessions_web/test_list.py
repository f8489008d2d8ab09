"""The sessions list: life-cycle sort, the compact State filter, duration and cost so far,
rows that cannot be terminated have no box, bulk terminate returns to the same filters."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from html import unescape

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.ledger import interval_key
from billing.models import CostEvent
from pools.models import CapacityPool
from sessions.intervals import close_open_interval, open_interval
from sessions.models import Issue, RunningInterval, Session, SessionState
from tests.factories import CapacityPoolFactory
from tests.sessions_web.conftest import T0, make_session

pytestmark = pytest.mark.django_db

LIFE_CYCLE = [
    "queued",
    "provisioning",
    "running",
    "pausing",
    "paused",
    "resuming",
    "terminating",
    "terminated",
    "failed",
    "lost",
]


def rows(resp) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(n) for n in re.findall(r'<a href="/sessions/(\d+)/">#', resp.content.decode())]


def states_shown(resp) -> list[str]:  # type: ignore[no-untyped-def]
    return re.findall(r'<span class="badge badge-state-(\w+)">', resp.content.decode())


def row_html(resp, pk: int) -> str:  # type: ignore[no-untyped-def]
    html = resp.content.decode()
    start = html.index(f'<a href="/sessions/{pk}/">#{pk}</a>')
    return html[html.rindex("<tr>", 0, start) : html.index("</tr>", start)]


@pytest.fixture
def every_state(org_a):  # type: ignore[no-untyped-def]
    # Created in the alphabet's order, so neither creation time nor the alphabet gives the
    # life cycle by accident.
    return {s: make_session(org_a, s) for s in sorted(LIFE_CYCLE)}


def test_state_sorts_by_life_cycle(client_as, alice, every_state) -> None:  # type: ignore[no-untyped-def]
    c = client_as(alice)
    assert states_shown(c.get("/sessions/?sort=state")) == LIFE_CYCLE
    assert states_shown(c.get("/sessions/?sort=-state")) == LIFE_CYCLE[::-1]
    assert states_shown(c.htmx("get", "/sessions/?sort=state")) == LIFE_CYCLE  # the poll too


@pytest.mark.parametrize(
    "query, expected",
    [
        ("state=live", LIFE_CYCLE[:7]),
        ("state=ended", LIFE_CYCLE[7:]),
        ("state=ended&state=paused", ["paused", *LIFE_CYCLE[7:]]),
        ("state=queued&state=provisioning", ["queued", "provisioning"]),  # the dashboard's link
        ("state=running", ["running"]),
        ("", LIFE_CYCLE),
    ],
)
def test_state_filter_takes_groups_and_states(  # type: ignore[no-untyped-def]
    client_as, alice, every_state, query, expected
) -> None:
    resp = client_as(alice).get(f"/sessions/?sort=state&{query}")
    assert states_shown(resp) == expected


def test_state_filter_is_a_compact_dropdown_of_checkboxes(client_as, alice, every_state) -> None:  # type: ignore[no-untyped-def]
    c = client_as(alice)
    html = c.get("/sessions/?state=live&state=failed").content.decode()
    assert 'multiple size="3"' not in html and '<details class="state-filter"' in html
    boxes = re.findall(r'<input class="form-check-input" type="checkbox" name="state"[^>]*>', html)
    assert len(boxes) == 2 + len(LIFE_CYCLE)
    checked = [re.search(r'value="(\w+)"', b).group(1) for b in boxes if "checked" in b]  # type: ignore[union-attr]
    assert checked == ["live", "failed"]
    summary = re.search(r'<span id="f-state-summary">([^<]*)</span>', html)
    assert summary and unescape(summary.group(1)) == "Live (not ended), Failed"
    assert ">Any state<" in c.get("/sessions/").content.decode()


def test_no_inline_script_handlers(client_as, alice, every_state) -> None:  # type: ignore[no-untyped-def]
    html = client_as(alice).get("/sessions/").content.decode()
    content = html[html.index('<h1 class="page-title mb-0">Sessions</h1>') :]  # the list's own
    assert not re.search(r"\son[a-z]+=", content)
    assert 'src="/static/js/sessions_list.js"' in html


def test_only_rows_that_can_be_terminated_have_a_box(client_as, alice, every_state) -> None:  # type: ignore[no-untyped-def]
    resp = client_as(alice).get("/sessions/")
    with_box = {
        s for s, session in every_state.items() if 'name="ids"' in row_html(resp, session.pk)
    }
    assert with_box == {"queued", "provisioning", "running", "pausing", "paused", "resuming"}


def test_long_titles_and_pool_names_are_cut_with_the_full_text_on_hover(  # type: ignore[no-untyped-def]
    client_as, alice, org_a
) -> None:
    title = "Make the exporter handle " + "very " * 40 + "long titles"
    pool = CapacityPoolFactory.create(org=org_a, name="pool-with-a-" + "long-" * 12 + "name")
    s = make_session(org_a, issue="ENG-7", pool=pool)
    Issue.objects.filter(org=org_a, key="ENG-7").update(title=title)
    row = row_html(client_as(alice).get("/sessions/"), s.pk)
    assert f'<div class="text-truncate" title="ENG-7: {title}">' in row  # the whole title
    assert f'<div class="text-truncate cell-pool" title="{pool.name}">' in row


def test_bulk_terminate_returns_to_the_same_filters(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    pool = CapacityPoolFactory.create(org=org_a, name="main")
    live = [make_session(org_a, SessionState.RUNNING, pool=pool) for _ in range(2)]
    c = client_as(alice)
    query = f"state=running&pool={pool.pk}&sort=state"
    page = c.get(f"/sessions/?{query}").content.decode()
    assert f'<input type="hidden" name="back" value="{query.replace("&", "&amp;")}">' in page

    ids = [s.pk for s in live]
    confirm = c.post("/sessions/bulk-terminate/", {"ids": ids, "back": query}).content.decode()
    assert f'href="/sessions/?{query.replace("&", "&amp;")}">Cancel</a>' in confirm
    assert f'name="back" value="{query.replace("&", "&amp;")}"' in confirm

    done = c.post("/sessions/bulk-terminate/", {"ids": ids, "back": query, "confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == f"/sessions/?{query}"
    assert set(Session.objects.filter(state=SessionState.TERMINATING)) == set(live)

    nothing = c.post("/sessions/bulk-terminate/", {"back": query})
    assert nothing["Location"] == f"/sessions/?{query}"


@pytest.mark.parametrize(
    "back, location",
    [
        ("", "/sessions/"),
        ("https://elsewhere.example/", "/sessions/"),
        ("//elsewhere.example/?state=running", "/sessions/"),
        ("?state=paused&next=https://elsewhere.example/", "/sessions/?state=paused"),
        ("state=" + "x" * 300, "/sessions/?state=" + "x" * 100),
    ],
)
def test_bulk_terminate_back_keeps_only_list_filters(  # type: ignore[no-untyped-def]
    client_as, alice, org_a, back, location
) -> None:
    s = make_session(org_a, SessionState.RUNNING)
    resp = client_as(alice).post(
        "/sessions/bulk-terminate/", {"ids": [s.pk], "back": back, "confirm": "yes"}
    )
    assert resp["Location"] == location


NOW = T0 + timedelta(hours=2)


def test_duration_and_cost_so_far_columns(client_as, alice, bob, fiona, org_a) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(NOW, tick=False):
        running = make_session(
            org_a, SessionState.RUNNING, started_at=NOW - timedelta(minutes=5, seconds=7)
        )
        ended = make_session(
            org_a,
            SessionState.TERMINATED,
            started_at=T0,
            ended_at=T0 + timedelta(seconds=67),
        )
        open_interval(ended, at=T0)
        close_open_interval(ended, at=T0 + timedelta(seconds=67), reason="terminate")
        open_interval(running, at=NOW - timedelta(minutes=5, seconds=7))
        queued = make_session(org_a, SessionState.QUEUED)

        resp = client_as(fiona).get("/sessions/")
        html = resp.content.decode()
        assert ">Duration</th>" in html and ">Cost so far</th>" in html
        # 2 vCPU, 1 GiB: (2 × 0.000014 + 0.0000045) per second.
        per_second = Decimal("0.0000325")
        assert '<td class="small">5 min 07 s</td>' in row_html(resp, running.pk)
        assert f'title="{(307 * per_second):.12f} USD">$0.01</td>' in row_html(resp, running.pk)
        assert '<td class="small">1 min 07 s</td>' in row_html(resp, ended.pk)
        assert f'title="{(67 * per_second):.12f} USD">$0.0022</td>' in row_html(resp, ended.pk)
        assert '<td class="small">—</td>' in row_html(resp, queued.pk)  # not started
        assert ">$0.00</td>" in row_html(resp, queued.pk)

        # What closing the running interval now would bill, to the last place.
        interval = RunningInterval.objects.get(session=running, ended_at__isnull=True)
        close_open_interval(running, at=NOW, reason="pause")
        billed = CostEvent.objects.get(idempotency_key=interval_key(interval)).amount
        assert billed == (307 * per_second).quantize(Decimal("1e-12"))

        member = client_as(bob).get("/sessions/").content.decode()
        assert ">Duration</th>" in member and "Cost so far" not in member  # no billing.view


def grow(org, count: int) -> None:  # type: ignore[no-untyped-def]
    """Sessions with ledger rows, half of them with an interval open (the cost column's
    work), over a few pools."""
    pools = [
        CapacityPool.objects.get_or_create(org=org, name=f"pool-{i}", defaults={"order": i})[0]
        for i in range(3)
    ]
    states = [SessionState.RUNNING, SessionState.PAUSED, SessionState.TERMINATED]
    for i in range(count):
        s = make_session(org, states[i % 3], issue=f"ENG-{i % 7}", pool=pools[i % 3], started_at=T0)
        open_interval(s, at=T0)
        close_open_interval(s, at=T0 + timedelta(seconds=30 + i), reason="pause")
        if s.state == SessionState.RUNNING:
            open_interval(s, at=T0 + timedelta(minutes=1))


def queries(fn) -> int:  # type: ignore[no-untyped-def]
    fn()  # warm up: the first request also writes the login session
    with CaptureQueriesContext(connection) as ctx:
        resp = fn()
    assert resp.status_code == 200
    assert "Cost so far" in resp.content.decode()
    return len(ctx.captured_queries)


@pytest.mark.parametrize(
    "url", ["/sessions/", "/sessions/?sort=state&state=live", "/sessions/?page=2"]
)
def test_queries_stay_flat_with_duration_and_cost(client_as, alice, org_a, url: str) -> None:  # type: ignore[no-untyped-def]
    c = client_as(alice)
    grow(org_a, 30)
    small = queries(lambda: c.get(url))
    small_htmx = queries(lambda: c.htmx("get", url))
    grow(org_a, 100)
    assert queries(lambda: c.get(url)) == small
    assert queries(lambda: c.htmx("get", url)) == small_htmx


def test_no_select_all_when_nothing_on_the_page_can_be_terminated(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    make_session(org_a, SessionState.TERMINATED)
    make_session(org_a, SessionState.FAILED)
    c = client_as(alice)
    assert 'id="select-all"' not in c.get("/sessions/").content.decode()
    make_session(org_a, SessionState.RUNNING)
    assert 'id="select-all"' in c.get("/sessions/").content.decode()


def test_an_ended_session_stops_its_duration_at_its_last_change(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(NOW, tick=False):
        s = make_session(org_a, SessionState.LOST, started_at=T0)  # no ended_at recorded
        Session.objects.filter(pk=s.pk).update(state_changed_at=T0 + timedelta(minutes=3))
        resp = client_as(alice).get("/sessions/")
    assert '<td class="small">3 min 00 s</td>' in row_html(resp, s.pk)
