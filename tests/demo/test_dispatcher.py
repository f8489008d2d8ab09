"""The demo dispatcher against a live server, a real Celery worker and the local E2B emulator:
what `make run` plus `manage.py demo_dispatcher` in a second terminal amount to."""

from __future__ import annotations

import csv
import io
import os
import signal
import threading
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from billing.models import CostEvent
from pools.e2b_emulator.testing import RunningEmulator
from rensei.models import ApiToken
from sessions.models import CommandRun, Session
from tests.demo.conftest import seed
from tests.emulator.helpers import wait_for
from tests.sessions_engine.conftest import ensure_rate_cards
from tests.worker import emulator_with_worker

IN_FLIGHT = ("provisioning", "pausing", "resuming", "terminating")


@pytest.fixture(scope="module")
def emulator_and_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[RunningEmulator]:
    """The emulator (any key accepted, as `make run` starts it) and a worker pointed at it."""
    with emulator_with_worker(django_db_blocker) as (emu, _worker):
        yield emu


def dispatch(*args: str) -> str:
    out = StringIO()
    call_command("demo_dispatcher", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_dispatcher_moves_the_demo_and_its_cost_lands_in_the_ledger(
    emulator_and_worker: RunningEmulator, live_server: Any, settings: Any, client_as: Any
) -> None:
    settings.DEBUG = True  # seed_demo's own guard, as in `make run`
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ensure_rate_cards()  # transactional tests flush the migration's rate card
    seed()

    # The seeded live sessions start in the emulator once the worker has them.
    def seeded_running() -> bool:
        return Session.objects.filter(org__slug="demo", state="running").count() == 3

    wait_for(seeded_running, timeout=60, interval=0.2)

    started = timezone.now()
    output = dispatch(
        "--create-token",
        "--url",
        live_server.url,
        "--duration",
        "40",
        "--rate",
        "40",
        "--seed",
        "7",
    )
    assert "API ERROR" not in output, output
    assert "0 API errors" in output
    # The token it made for the run does not outlive it.
    made = ApiToken.objects.get(org__slug="demo", name="demo dispatcher (this run)")
    assert made.is_revoked and made.prefix in output

    # Let the jobs it asked for finish.
    def settled() -> bool:
        return not Session.objects.filter(org__slug="demo", state__in=IN_FLIGHT).exists()

    wait_for(settled, timeout=60, interval=0.2)

    ours = Session.objects.filter(api_idempotency_key__startswith="demo-dispatcher-")
    assert ours.count() >= 3, output
    assert not ours.filter(state__in=["failed", "lost"]).exists(), output
    # It keeps the pool below its cap by terminating the oldest live sessions, seeded ones
    # included, so "finished" is every demo session that ended while it ran.
    finished = list(
        Session.objects.filter(
            org__slug="demo", state="terminated", ended_at__gte=started
        ).select_related("issue")
    )
    assert finished, output
    ran = CommandRun.objects.filter(session__org__slug="demo", command="which donmai")
    assert ran.filter(state="done", exit_code=0, stdout__endswith="/donmai\n").exists(), output

    # Every session it finished was billed, and Cost per Issue counts it.
    finance = client_as(get_user_model().objects.get(username="finance"))
    export = finance.get("/analytics/cost-per-issue/?format=csv").content.decode()
    shown = {
        row["issue_key"]: Decimal(row["amount"]) for row in csv.DictReader(io.StringIO(export))
    }
    for session in finished:
        assert session.intervals.exists() and not session.intervals.filter(ended_at=None).exists()
        billed = CostEvent.objects.filter(session=session)
        assert billed.count() == session.intervals.count()
        assert billed.aggregate(s=Sum("amount"))["s"] > 0
        assert session.issue is not None and shown[session.issue.key] > 0
        page = finance.get(f"/analytics/issues/{session.issue.key}/").content.decode()
        assert f"#{session.pk}</a>" in page


def test_refuses_a_server_that_is_not_this_machine(db: None) -> None:
    with pytest.raises(CommandError, match="on this machine"):
        dispatch("--url", "http://example.com:8000", "--token", "rsn_x_y", "--duration", "1")


def test_without_a_token_it_says_how_to_get_one(db: None, monkeypatch: Any) -> None:
    monkeypatch.delenv("RENSEI_API_TOKEN", raising=False)
    with pytest.raises(CommandError, match="--create-token"):
        dispatch("--duration", "1")


def test_create_token_needs_the_demo_org(db: None) -> None:
    with pytest.raises(CommandError, match="seed_demo"):
        dispatch("--create-token", "--duration", "1")


def test_a_refused_token_is_an_error(live_server: Any, db: None) -> None:
    with pytest.raises(CommandError, match="did not accept"):
        dispatch("--url", live_server.url, "--token", "rsn_abcdefgh_nope", "--duration", "1")


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_it_as_ctrl_c_does_and_revokes_its_token(
    emulator_and_worker: RunningEmulator, live_server: Any, settings: Any
) -> None:
    """`kill` (or SIGINT to a dispatcher started in the background, which a shell starts
    with SIGINT ignored) ends the run cleanly: the token made for it does not outlive it."""
    settings.DEBUG = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ensure_rate_cards()
    seed()
    made = ApiToken.objects.filter(org__slug="demo", name="demo dispatcher (this run)")
    sent: list[bool] = []

    def terminate_once_it_runs() -> None:
        try:
            wait_for(
                lambda: made.filter(last_used_at__isnull=False).exists(), timeout=60, interval=0.1
            )
            os.kill(os.getpid(), signal.SIGTERM)
            sent.append(True)
        finally:
            connection.close()

    # Handlers are the main thread's: elsewhere the signal would end this test process.
    assert threading.current_thread() is threading.main_thread()
    killer = threading.Thread(target=terminate_once_it_runs)
    saved = signal.getsignal(signal.SIGTERM)
    killer.start()
    try:
        output = dispatch("--create-token", "--url", live_server.url, "--duration", "120")
    finally:
        killer.join(timeout=60)
    assert sent == [True]
    assert "Stopping (Ctrl-C or a signal)." in output
    assert made.get().is_revoked and "Revoked API token" in output
    assert signal.getsignal(signal.SIGTERM) is saved  # the handler went with the run
