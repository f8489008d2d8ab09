"""The live regions: the session page's status partial, the dashboard's and Capacity's.

Each polled answer renders from the database, whoever changed it: here the changes are made
the way the API and the jobs make them (service functions, job bodies), never through the
page being looked at.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pools.models import CapacityPool
from rensei.models import Channel
from sessions import jobs, lifecycle, services
from sessions.intervals import open_interval
from sessions.models import RunningInterval, Session, SessionState, SessionTransition
from tests.billing.helpers import run
from tests.factories import CapacityPoolFactory, RunningIntervalFactory
from tests.sessions_web.conftest import T0, make_session

pytestmark = pytest.mark.django_db

S = SessionState
# Polls skip while the tab is hidden (static/js/behaviours.js reads data-poll-when-visible).
POLL = 'every 3s" data-poll-when-visible'


def text(resp) -> str:  # type: ignore[no-untyped-def]
    html = resp.content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def running_session(org) -> Session:  # type: ignore[no-untyped-def]
    """Running for a minute, as the provision job leaves it: a timeline and an open interval."""
    s = make_session(org, S.RUNNING)
    started = timezone.now() - timedelta(minutes=1)
    for from_state, to_state in (("", S.QUEUED), (S.QUEUED, S.PROVISIONING)):
        SessionTransition.objects.create(session=s, from_state=from_state, to_state=to_state)
    SessionTransition.objects.create(session=s, from_state=S.PROVISIONING, to_state=S.RUNNING)
    open_interval(s, started)
    Session.objects.filter(pk=s.pk).update(started_at=started)
    s.refresh_from_db()
    return s


def pause_elsewhere(s: Session) -> None:
    """What the API's pause and the pause job do, without this page."""
    assert services.request_pause(s, None, Channel.API)
    assert lifecycle.mark_paused(s, "paused", expected=[S.PAUSING])


def poll(c, s: Session, exec_shown: str | None = None):  # type: ignore[no-untyped-def]
    params = {"exec_shown": exec_shown} if exec_shown is not None else None
    return c.htmx("get", f"/sessions/{s.pk}/status/", params)


def oob_ids(resp) -> list[str]:  # type: ignore[no-untyped-def]
    html = resp.content.decode()
    return re.findall(r'<\w+ id="([\w-]+)"[^>]*hx-swap-oob=', html)


# --- the session page ----------------------------------------------------------------------


def test_a_running_session_page_polls_its_status(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    s = running_session(org_a)
    html = client_as(alice).get(f"/sessions/{s.pk}/").content.decode()
    assert f'hx-get="/sessions/{s.pk}/status/" hx-trigger="{POLL}' in html
    # The page tells each poll which exec form it shows.
    assert 'hx-include="#exec-shown"' in html
    assert 'id="exec-shown" name="exec_shown" value="1"' in html
    assert 'id="session-cost"' in html


def test_the_poll_follows_a_pause_made_elsewhere(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    s = running_session(org_a)
    c = client_as(alice)
    before = poll(c, s, exec_shown="1")
    assert before.status_code == 200
    assert "Running" in text(before) and 'id="action-pause"' in before.content.decode()
    assert "0 ledger rows" in text(before)
    # Exec is still allowed and the page shows the form: the form is not sent again.
    assert oob_ids(before) == ["session-cost"]

    pause_elsewhere(s)
    after = poll(c, s, exec_shown="1")
    assert after.status_code == 200  # paused is not final: it may resume or end
    page = after.content.decode()
    assert "Paused" in text(after)
    assert 'id="action-pause"' not in page and 'id="action-resume"' in page
    assert 'id="action-terminate"' in page
    assert "running → pausing" in text(after) and "pausing → paused" in text(after)
    assert "1 ledger row" in text(after)
    # Exec is no longer allowed: the form is replaced, out of band, by the reason.
    assert oob_ids(after) == ["session-cost", "exec-gate"]
    assert 'name="exec_shown" value="0"' in page and 'name="command"' not in page
    assert "Commands run only while the session is running." in text(after)


def test_the_exec_form_comes_back_when_the_session_runs_again(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    s = running_session(org_a)
    pause_elsewhere(s)
    c = client_as(alice)
    assert oob_ids(poll(c, s, exec_shown="0")) == ["session-cost"]
    assert services.request_resume(s, None, Channel.API)
    assert lifecycle.mark_running(s, "resumed", expected=[S.RESUMING])
    resp = poll(c, s, exec_shown="0")
    assert oob_ids(resp) == ["session-cost", "exec-gate"]
    assert 'name="command"' in resp.content.decode()
    # A page that already shows the form keeps it (and what is typed in it).
    assert oob_ids(poll(c, s, exec_shown="1")) == ["session-cost"]


def test_terminated_is_final_stop_polling_with_286(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    s = running_session(org_a)
    c = client_as(alice)
    assert services.request_terminate(s, None, Channel.API)
    terminating = poll(c, s, exec_shown="1")
    assert terminating.status_code == 200 and "Terminating" in text(terminating)
    assert "exec-gate" in oob_ids(terminating)
    jobs.terminate(s.pk)
    ended = poll(c, s, exec_shown="0")
    assert ended.status_code == 286
    html = ended.content.decode()
    assert "Terminated" in text(ended) and 'hx-trigger="every' not in html
    assert "/pause/" not in html and "/resume/" not in html and "/terminate/" not in html
    assert "1 ledger row" in text(ended)
    assert "terminating → terminated" in text(ended)


def test_an_ended_session_with_an_open_interval_is_not_final_yet(  # type: ignore[no-untyped-def]
    client_as, alice, org_a
) -> None:
    """The ledger row is written when the interval closes: until then the cost may change."""
    s = make_session(org_a, S.LOST)
    RunningIntervalFactory.create(session=s, started_at=T0)
    assert poll(client_as(alice), s).status_code == 200
    RunningInterval.objects.filter(session=s).update(ended_at=T0 + timedelta(minutes=1))
    assert poll(client_as(alice), s).status_code == 286


def test_an_action_answer_carries_the_notice_and_the_dependent_regions(  # type: ignore[no-untyped-def]
    client_as, alice, org_a
) -> None:
    s = running_session(org_a)
    resp = client_as(alice).htmx("post", f"/sessions/{s.pk}/pause/", {"exec_shown": "1"})
    assert resp.status_code == 200
    assert oob_ids(resp) == ["session-cost", "toasts", "exec-gate"]
    assert f"Pausing session {s.pk}…" in text(resp)
    assert "Pausing" in text(resp) and 'hx-trigger="' + POLL in resp.content.decode()


def test_people_who_only_look_get_no_buttons_or_console(  # type: ignore[no-untyped-def]
    client_as, bob, fiona, org_a
) -> None:
    s = running_session(org_a)
    for person, sees_cost in ((bob, False), (fiona, True)):
        resp = poll(client_as(person), s, exec_shown="1")
        html = resp.content.decode()
        assert resp.status_code == 200 and "Running" in text(resp)
        assert "/pause/" not in html and "exec-gate" not in html and "hx-include" not in html
        assert ("ledger row" in text(resp)) is sees_cost


def test_the_poll_says_why_a_queued_session_waits_until_it_runs(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    pool = CapacityPoolFactory.create(
        org=org_a, name="e2b-main", provider="e2b", order=1, concurrency_cap=1
    )
    make_session(org_a, S.RUNNING, pool=pool)
    waiting = make_session(org_a, S.QUEUED, routing={"waiting_for": ["e2b-main"]})
    c = client_as(alice)
    queued = poll(c, waiting)
    assert queued.status_code == 200
    assert "e2b-main is at its cap (1/1); 1st in line" in text(queued)
    Session.objects.filter(pk=waiting.pk).update(state=S.RUNNING, pool=pool)
    assert "in line" not in text(poll(c, waiting))


def test_another_orgs_status_partial_is_404(client_as, charlie, org_a) -> None:  # type: ignore[no-untyped-def]
    s = running_session(org_a)
    assert poll(client_as(charlie), s).status_code == 404


def test_the_poll_is_flat_as_timeline_and_ledger_grow(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    s = make_session(org_a, S.RUNNING)
    c = client_as(alice)

    def grow(n: int, offset: int) -> None:
        for i in range(offset, offset + n):
            start = T0 + timedelta(hours=i)
            run(s, start, start + timedelta(minutes=1))
            SessionTransition.objects.create(session=s, from_state=S.RUNNING, to_state=S.PAUSED)
        open_interval(s, T0 + timedelta(hours=offset + n))

    def count() -> int:
        poll(c, s, exec_shown="1")  # warm up
        with CaptureQueriesContext(connection) as ctx:
            assert poll(c, s, exec_shown="1").status_code == 200
        return len(ctx.captured_queries)

    grow(2, 0)
    small = count()
    RunningInterval.objects.filter(session=s, ended_at__isnull=True).update(
        ended_at=T0 + timedelta(hours=2, minutes=1)
    )
    grow(20, 3)
    assert count() == small


# --- dashboard -----------------------------------------------------------------------------


def test_the_dashboard_polls_its_counts_and_recent_sessions(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    s = running_session(org_a)
    c = client_as(alice)
    html = c.get("/").content.decode()
    assert f'<div id="dashboard-live" hx-get="/" hx-trigger="{POLL}' in html
    live = c.htmx("get", "/")
    assert live.status_code == 200 and "<html" not in live.content.decode()
    assert re.search(r"Running 1 Paused 0", text(live))
    pause_elsewhere(s)
    live = c.htmx("get", "/")
    assert re.search(r"Running 0 Paused 1", text(live))
    assert f"#{s.pk} ENG-142 Paused" in text(live)


# --- capacity ------------------------------------------------------------------------------


def capacity_poll(c, html: str):  # type: ignore[no-untyped-def]
    """Fetch what the page's poller asks for."""
    url = re.search(r'id="pool-live" hidden hx-get="([^"]+)"', html)
    assert url, "the capacity page polls"
    return c.htmx("get", url.group(1).replace("&amp;", "&"))


def test_capacity_counts_follow_sessions_without_redrawing_the_table(  # type: ignore[no-untyped-def]
    client_as, bob, org_a
) -> None:
    pool = CapacityPoolFactory.create(org=org_a, name="e2b-main", provider="e2b", order=1)
    s = make_session(org_a, S.RUNNING, pool=pool)
    make_session(org_a, S.RUNNING, pool=pool)
    c = client_as(bob)
    html = c.get("/settings/execution/capacity/").content.decode()
    assert f'<span id="pool-{pool.pk}-running">2</span>' in html
    Session.objects.filter(pk=s.pk).update(state=S.PAUSED)
    live = capacity_poll(c, html)
    assert live.status_code == 200 and "HX-Retarget" not in live
    body = live.content.decode()
    assert f'<span id="pool-{pool.pk}-running" hx-swap-oob="true">1</span>' in body
    assert f'<span id="pool-{pool.pk}-paused" hx-swap-oob="true">1</span>' in body
    assert f'<td id="pool-{pool.pk}-health" hx-swap-oob="true"' in body
    assert "<table" not in body  # the buttons and links stay as they are


def test_capacity_redraws_the_table_when_pools_change_elsewhere(  # type: ignore[no-untyped-def]
    client_as, alice, org_a
) -> None:
    pool = CapacityPoolFactory.create(org=org_a, name="e2b-main", provider="e2b", order=1)
    c = client_as(alice)
    html = c.get("/settings/execution/capacity/").content.decode()
    CapacityPool.objects.filter(pk=pool.pk).update(enabled=False, concurrency_cap=3)
    live = capacity_poll(c, html)
    assert live["HX-Retarget"] == "#pool-table" and live["HX-Reswap"] == "outerHTML"
    assert "Disabled" in text(live) and "Enable" in text(live)
    # The redrawn table carries a poller that matches it again: the next poll is cells only.
    assert "HX-Retarget" not in capacity_poll(c, live.content.decode())


def test_capacity_poll_is_flat_as_sessions_grow(client_as, bob, org_a) -> None:  # type: ignore[no-untyped-def]
    pools = [
        CapacityPoolFactory.create(org=org_a, name=f"pool-{i}", provider="e2b", order=i)
        for i in range(3)
    ]
    c = client_as(bob)

    def count() -> int:
        html = c.get("/settings/execution/capacity/").content.decode()
        with CaptureQueriesContext(connection) as ctx:
            assert "HX-Retarget" not in capacity_poll(c, html)
        return len(ctx.captured_queries)

    for p in pools:
        make_session(org_a, S.RUNNING, pool=p)
    small = count()
    for i in range(30):
        make_session(org_a, S.RUNNING if i % 2 else S.PAUSED, pool=pools[i % 3])
    assert count() == small
