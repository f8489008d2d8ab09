"""Outages mid-storm: the broker restarted, E2B unreachable for 30 s, PostgreSQL restarted.

Each test runs a storm (sessions through create → pause → resume → command → terminate,
five in flight, real workers, the emulator) and takes one server down in the middle of it.
While it is down, the storm keeps asking and a person and the dispatcher keep reading:
pages and the API answer what they can, and the product's 503 (page, or JSON with
``Retry-After``) for what needs the missing server; never a traceback. Once it is back,
every session must reach its end (terminated, commands finished), with 0 leaked sandboxes,
0 sessions with two, 0 missing or duplicate cost events, and none ``lost`` or ``failed``.

The servers taken down are the test's own (tests/reliability/outages.py): a Redis on a free
port without persistence (a restart loses every message: only the database's intents
remain), a TCP proxy in front of the emulator, a PostgreSQL cluster in a temp dir. Workers
run with the production defaults (an hour's visibility timeout).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client

from rensei.models import Channel, Membership, Organization, Role
from rensei.tokens import SCOPES, create_token
from sessions import reconcile
from sessions.models import CommandRun, CommandRunState, Session, SessionState
from tests.reliability.outages import OwnPostgres, OwnRedis, Storm, TcpProxy, use_broker
from tests.reliability.stack import (
    leaked_sandboxes,
    ledger_problems,
    require_redis_broker,
    running_stack,
    sessions_with_two_sandboxes,
)
from tests.services import IN_CI
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool

S = SessionState
pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = 6.0  # seconds of storm before the outage
AFTER = 6.0  # seconds of storm after it, before the storm stops creating
SETTLE = 120.0  # bound for every session to end once the storm stops


class Probe:
    """A person on the pages and the dispatcher on the API, during the outage."""

    def __init__(self, org: Organization) -> None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user("outage-admin", password="x")
        Membership.objects.create(user=user, org=org, role=Role.ADMIN)
        self.web = Client(raise_request_exception=False)
        self.web.force_login(user)
        _, token = create_token(org, "outage-dispatcher", None, Channel.CLI, scopes=SCOPES)
        self.api = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}")
        self.statuses: Counter[str] = Counter()
        self.bad: list[str] = []

    def look(self, session_id: int | None) -> None:
        pages = ["/", "/sessions/"] + ([f"/sessions/{session_id}/"] if session_id else [])
        apis = ["/api/v1/sessions"] + ([f"/api/v1/sessions/{session_id}"] if session_id else [])
        for url in pages:
            self._check(url, self.web.get(url), api=False)
        for url in apis:
            self._check(url, self.api.get(url), api=True)

    def _check(self, url: str, response: Any, *, api: bool) -> None:
        status = response.status_code
        self.statuses[f"{'API' if api else 'page'} {status}"] += 1
        body = response.content.decode(errors="replace")
        if "Traceback" in body or "technical_500" in body:
            self.bad.append(f"{url}: a traceback")
        if status == 503:
            ok = response.get("Retry-After") and (
                response.get("Content-Type") == "application/json"
                if api
                else "briefly unavailable" in body
            )
            if not ok:
                self.bad.append(f"{url}: a 503 without the product's body or Retry-After")
        elif status >= 500:
            self.bad.append(f"{url}: {status}")


@contextmanager
def storm_stack(django_db_blocker: Any, org: Organization, **kw: Any) -> Iterator[Any]:
    ensure_rate_cards()
    with running_stack(django_db_blocker, workers=2, defaults=True, **kw) as stack:
        pool = make_pool(org, "outage", provider="e2b", config={"templateId": "donmai-worker"})
        for endpoint in ("create", "pause", "connect", "kill"):
            stack.emulator.set_latency(150, endpoint)
        yield stack, Storm(org, pool), Probe(org)


def run_outage(
    stack: Any,
    storm: Storm,
    probe: Probe,
    *,
    down: Callable[[], None],
    up: Callable[[], None],
    seconds: float,
    during: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """BEFORE s of storm, ``down()``, ``seconds`` of outage, ``up()``, AFTER s, then settle."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < BEFORE:
        storm.step()
        time.sleep(0.2)
    in_flight = Counter(s.state for s in storm.sessions if s.state in S.values)
    down()
    t_down = time.monotonic()
    while time.monotonic() - t_down < seconds:
        storm.step()
        probe.look(storm.sessions[-1].pk if storm.sessions else None)
        if during is not None:
            during()
        time.sleep(0.5)
    up()
    t_up = time.monotonic()
    while time.monotonic() - t_up < AFTER:
        storm.step()
        time.sleep(0.2)
    settled = False
    while time.monotonic() - t_up < AFTER + SETTLE:
        if storm.finish():
            settled = True
            break
        time.sleep(0.5)
    took = time.monotonic() - t_up
    return {
        "outage (s)": round(seconds, 1),
        "session states when it began": dict(in_flight),
        "seconds from the end of the outage to every session ended": round(took, 1)
        if settled
        else f"not within {AFTER + SETTLE:.0f}",
        "settled": settled,
    }


def audit(stack: Any, storm: Storm, probe: Probe, org: Organization) -> dict[str, Any]:
    summary = reconcile.reconcile_org(org.pk)
    problems, ledger = ledger_problems(storm.sessions)
    return {
        **storm.outcome(),
        "responses during the outage": dict(probe.statuses),
        "bad responses (5xx other than the product's 503, tracebacks)": len(probe.bad),
        "leaked sandboxes": len(leaked_sandboxes(stack.emu)),
        "sessions with two sandboxes": len(sessions_with_two_sandboxes(stack.emu)),
        "ledger problems (duplicate or missing cost events)": len(problems),
        "orphans the reconcile pass after it killed": summary["orphans_killed"],
        **ledger,
        "_problems": problems,
        "_bad": probe.bad,
    }


def check(
    fig: Any, result: dict[str, Any], storm: Storm, *, command_errors: tuple[str, ...] = ()
) -> None:
    """``command_errors``: the only errors a command may end with, each a part of its message
    (E2B cut off while it was sent: commands are never retried, they may have side effects);
    with none, every command is done."""
    problems, bad = result.pop("_problems"), result.pop("_bad")
    errors = list(
        CommandRun.objects.filter(session__in=storm.sessions, state=CommandRunState.ERROR)
        .values_list("error", flat=True)
        .distinct()
    )
    if errors:
        result["command errors"] = errors
    fig.add(1)
    fig.details = result
    assert result["settled"], f"sessions did not end: {result['final session states']}"
    states = Counter(s.state for s in storm.sessions)
    assert set(states) == {S.TERMINATED}, states
    assert set(result["commands"]) <= {"done", "error"}, result["commands"]
    assert all(any(part in e for part in command_errors) for e in errors), errors
    assert not bad, bad
    assert result["leaked sandboxes"] == 0
    assert result["sessions with two sandboxes"] == 0
    assert not problems, "\n".join(problems)
    assert result["orphans the reconcile pass after it killed"] == 0


def test_redis_restarted_mid_storm(org_a, django_db_blocker, figure):  # type: ignore[no-untyped-def]
    require_redis_broker()
    fig = figure("outage_redis")
    fig.unit = "Redis restart"
    redis = OwnRedis()
    redis.start()
    try:
        with use_broker(redis.url), storm_stack(django_db_blocker, org_a) as (stack, storm, probe):
            result = run_outage(stack, storm, probe, down=redis.stop, up=redis.start, seconds=10.0)
            result.update(audit(stack, storm, probe, org_a))
            result["Redis"] = "own server, no persistence: the restart lost every message"
            check(fig, result, storm)
    finally:
        redis.close()


def test_e2b_unreachable_for_30_seconds(org_a, django_db_blocker, figure):  # type: ignore[no-untyped-def]
    require_redis_broker()
    fig = figure("outage_e2b")
    fig.unit = "30-s E2B outage"
    proxies: list[TcpProxy] = []

    def through_proxy(url: str) -> str:
        proxies.append(TcpProxy(url).start())
        return proxies[0].url

    passes: list[dict[str, int]] = []

    def reconcile_during() -> None:
        if len(passes) < 3:
            passes.append(reconcile.reconcile_org(org_a.pk))

    with storm_stack(django_db_blocker, org_a, e2b_url=through_proxy) as (stack, storm, probe):
        proxy = proxies[0]
        result = run_outage(
            stack,
            storm,
            probe,
            down=proxy.cut,
            up=proxy.restore,
            seconds=30.0,
            during=reconcile_during,
        )
        result.update(audit(stack, storm, probe, org_a))
        result["reconcile passes during the outage: lost, errors"] = [
            (p["lost"], p["errors"]) for p in passes
        ]
        # A command whose request is refused says E2B could not be reached; one whose
        # connection to envd drops mid-stream (and whose health probe then fails) says the
        # sandbox could not be reached. Both are the outage, reported as it was met.
        check(fig, result, storm, command_errors=("Could not reach E2B", "could not be reached."))
        assert passes and all(p["lost"] == 0 and p["errors"] >= 1 for p in passes), passes
        assert not Session.objects.filter(state__in=[S.LOST, S.FAILED]).exists()


@contextmanager
def database_on(pg: OwnPostgres, name: str) -> Iterator[None]:
    """This process (and the workers it starts) on database ``name`` of ``pg``, migrated."""
    conn = connections["default"]
    conn.close()
    saved = dict(conn.settings_dict)
    conn.settings_dict.update(
        HOST="127.0.0.1", PORT=str(pg.port), NAME=name, USER=pg.user, PASSWORD=""
    )
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield
    finally:
        conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)


def test_postgres_restarted_mid_storm(django_db_blocker, figure):  # type: ignore[no-untyped-def]
    require_redis_broker()
    if connections["default"].vendor != "postgresql" or not OwnPostgres.available():
        message = "needs the suite on PostgreSQL and its server binaries (initdb, pg_ctl)"
        if IN_CI:
            pytest.fail(message + " (CI must provide them)", pytrace=False)
        pytest.skip(message)
    fig = figure("outage_postgres")
    fig.unit = "PostgreSQL restart"
    pg = OwnPostgres()
    pg.init()
    pg.start()
    try:
        import subprocess

        from tests.reliability.outages import PG_BIN

        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user,
             "outage"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        with django_db_blocker.unblock(), database_on(pg, "outage"):
            org = Organization.objects.create(slug="org-pg", name="Org PG")
            with storm_stack(django_db_blocker, org) as (stack, storm, probe):
                result = run_outage(stack, storm, probe, down=pg.stop, up=pg.start, seconds=10.0)
                result.update(audit(stack, storm, probe, org))
                result["PostgreSQL"] = "own cluster, stopped with pg_ctl -m immediate"
                check(fig, result, storm)
                assert probe.statuses["page 503"] > 0 and probe.statuses["API 503"] > 0
    finally:
        pg.close()
