"""A fresh demo leaves capacity free: a newcomer's first session runs within seconds, next
to the demo's own sessions and with the demo dispatcher running flat out (a real Celery
worker, the real E2B SDK and the local emulator, as `make run` has them)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.models import ReconciliationRun
from pools.e2b_emulator.testing import RunningEmulator
from pools.models import CapacityPool
from rensei import tokens
from rensei.demo import DISPATCHER_MAX_LIVE, MAIN_CAP, MAIN_POOL
from rensei.models import AuditEvent, Channel, Credential, Organization
from rensei.tokens import create_token
from sessions.dispatch import slots_in_use
from sessions.models import LIVE_STATES, Session
from tests.demo.conftest import seed
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards
from tests.sessions_web.conftest import ApiClient
from tests.worker import emulator_with_worker

WAIT = 60  # seconds: a bound for polling, not a timing assertion
BODY = {
    "issue": {"key": "ENG-101", "title": "Flaky checkout test on CI"},
    "runtime_kinds": ["npm"],
    "requirement_kinds": ["git"],
}
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def emulator_and_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[RunningEmulator]:
    with emulator_with_worker(django_db_blocker) as (emu, _worker):
        yield emu


@pytest.fixture
def fresh_demo(emulator_and_worker: RunningEmulator, settings: Any) -> Organization:
    """`make run` on a new clone: seeded, and the seeded live sessions running."""
    settings.DEBUG = True  # seed_demo's own guard, as in `make run`
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ensure_rate_cards()
    seed()
    org = Organization.objects.get(slug="demo")
    wait_for(
        lambda: Session.objects.filter(org=org, state="running").count() == 3,
        timeout=WAIT,
        interval=0.2,
    )
    return org


def running_soon(session_id: int) -> Session:
    def check() -> bool:
        return Session.objects.filter(pk=session_id, state="running").exists()

    wait_for(check, timeout=WAIT, interval=0.2)
    return Session.objects.get(pk=session_id)


def test_a_newcomers_first_session_runs_through_the_api_and_the_form(
    fresh_demo: Organization, client_as: Any
) -> None:
    pool = CapacityPool.objects.get(org=fresh_demo, name=MAIN_POOL)
    assert pool.concurrency_cap == MAIN_CAP
    assert slots_in_use([pool.pk]) == {pool.pk: 3}

    _, token = create_token(fresh_demo, "my dispatcher", None, Channel.CLI)
    answer = ApiClient(token).post("/api/v1/sessions", BODY)
    assert answer.status_code == 202
    body = answer.json()
    assert (body["state"], body["pool"], body["queue"]) == ("provisioning", MAIN_POOL, None)
    assert running_soon(body["id"]).sandbox_id

    admin = client_as(get_user_model().objects.get(username="admin"))
    form = {"issue_key": "ENG-112", "runtime_kinds": ["npm"], "requirement_kinds": ["git"]}
    response = admin.post("/sessions/new/", form)
    assert response.status_code == 302
    made = Session.objects.get(org=fresh_demo, issue__key="ENG-112", created_by__username="admin")
    assert made.state == "provisioning"
    assert running_soon(made.pk).pool == pool


def test_the_demo_dispatcher_at_full_speed_leaves_room_for_a_newcomer(
    fresh_demo: Organization, live_server: Any
) -> None:
    pool = CapacityPool.objects.get(org=fresh_demo, name=MAIN_POOL)
    # The dispatcher runs `which donmai` in what it starts: it needs every scope.
    _, token = create_token(
        fresh_demo, "demo dispatcher (test)", None, Channel.CLI, scopes=tokens.SCOPES
    )
    out = StringIO()
    failures: list[BaseException] = []

    def run_dispatcher() -> None:
        try:
            call_command(
                "demo_dispatcher",
                "--token",
                token,
                "--url",
                live_server.url,
                "--rate",
                "60",
                "--duration",
                "25",
                "--seed",
                "11",
                stdout=out,
            )
        except BaseException as exc:  # reported below, with its output
            failures.append(exc)
        finally:
            connection.close()

    dispatcher = threading.Thread(target=run_dispatcher)
    dispatcher.start()
    most = 0

    def sample() -> int:
        nonlocal most
        most = max(most, slots_in_use([pool.pk]).get(pool.pk, 0))
        return most

    try:
        # The dispatcher has made all the sessions it will (it stops at --max-live).
        def saturated() -> bool:
            sample()
            ours = Session.objects.filter(api_idempotency_key__startswith="demo-dispatcher-")
            live = Session.objects.filter(org=fresh_demo, state__in=LIVE_STATES).count()
            return ours.exists() and live >= DISPATCHER_MAX_LIVE

        wait_for(saturated, timeout=WAIT, interval=0.1)
        answer = ApiClient(token).post("/api/v1/sessions", BODY).json()
        assert answer["state"] == "provisioning" and answer["queue"] is None, answer
        running_soon(answer["id"])
        while dispatcher.is_alive():
            sample()
            dispatcher.join(timeout=0.1)
    finally:
        dispatcher.join(timeout=WAIT)
    assert failures == [], out.getvalue()
    assert "0 API errors" in out.getvalue(), out.getvalue()
    # The dispatcher stays under its own limit (ours came on top): the pool never filled.
    assert 0 < most <= DISPATCHER_MAX_LIVE + 1, out.getvalue()
    assert most < MAIN_CAP


def test_a_fresh_demo_tests_its_key_and_checks_its_pools(
    fresh_demo: Organization, client_as: Any
) -> None:
    """`make run` seeds before the emulator is up; the worker then tests the key, checks the
    pools and reconciles yesterday, so the first look at those pages says what is true."""

    def checked() -> bool:
        pools = CapacityPool.objects.filter(org=fresh_demo)
        return (
            Credential.objects.filter(org=fresh_demo, last_test_ok__isnull=False).exists()
            and not pools.filter(health_checked_at__isnull=True).exists()
            and ReconciliationRun.objects.filter(org=fresh_demo).exists()
        )

    wait_for(checked, timeout=WAIT, interval=0.2)
    assert Credential.objects.get(org=fresh_demo, provider="e2b").last_test_ok is True
    health = dict(CapacityPool.objects.filter(org=fresh_demo).values_list("name", "health_status"))
    assert health == {MAIN_POOL: "passing", "demo-base": "failing"}  # base has no donmai
    tested = AuditEvent.objects.get(org=fresh_demo, action="credential.tested")
    assert (tested.channel, tested.actor, tested.detail["result"]) == ("job", None, "ok")

    run = ReconciliationRun.objects.get(org=fresh_demo)  # yesterday, with E2B's list
    assert run.day == timezone.now().date() - timedelta(days=1)
    assert run.provider_seen and run.provider_error == ""

    admin = client_as(get_user_model().objects.get(username="admin"))
    page = admin.get("/settings/integrations/").content.decode()
    assert "Connected: key ending ••••" in page and "Saved, not tested" not in page
    capacity = admin.get("/settings/execution/capacity/").content.decode()
    assert "Passing" in capacity and "Failing" in capacity and "Not checked" not in capacity
