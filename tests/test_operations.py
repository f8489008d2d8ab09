"""Operations: /healthz, /readyz, /metrics, request ids and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import secrets
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from rensei import metrics, ops
from rensei.celery import app
from rensei.jobs import provider_task
from rensei.logging import ContextFilter, JsonFormatter
from sessions.models import Session, SessionState
from tests.factories import SessionFactory


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_healthz_answers_without_the_database(client) -> None:  # type: ignore[no-untyped-def]
    # No db fixture: pytest-django fails any database access in this test.
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_dependency_with_latency_and_no_secret(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = ""
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["broker"]["status"] == "ok"
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert body["checks"]["e2b"] == {"status": "not configured"}


@pytest.mark.django_db
def test_readyz_stays_ready_when_e2b_does_not_answer(client, settings) -> None:  # type: ignore[no-untyped-def]
    key = f"e2b_CANARY_{secrets.token_hex(8)}"
    settings.E2B_API_KEY = key
    settings.E2B_API_URL = f"http://127.0.0.1:{_closed_port()}"
    settings.E2B_SANDBOX_URL = settings.E2B_API_URL
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["checks"]["e2b"]["status"] == "down"
    assert key not in resp.content.decode() and "127.0.0.1" not in resp.content.decode()


@pytest.mark.django_db
def test_readyz_reads_e2b_through_the_provider(client, e2b_settings) -> None:  # type: ignore[no-untyped-def]
    check = client.get("/readyz").json()["checks"]["e2b"]
    assert check["status"] == "ok" and check["latency_ms"] > 0


@pytest.fixture
def broker_down() -> Iterator[None]:
    """A Redis broker that is not there (nothing listens on the port)."""
    # The read URL, which Celery prefers to broker_url (itself taken from the environment
    # before the configuration when CELERY_BROKER_URL is set).
    real = {
        "broker_read_url": app.conf.get("broker_read_url"),
        "broker_transport": app.conf.broker_transport,
    }
    app.conf.update(broker_read_url=f"redis://127.0.0.1:{_closed_port()}/0", broker_transport=None)
    try:
        yield
    finally:
        app.conf.update(real)


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_down(client, broker_down) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.django_db
def test_metrics_need_the_token(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.RENSEI_METRICS_TOKEN = "m-" + secrets.token_hex(8)
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.RENSEI_METRICS_TOKEN}")
    assert ok.status_code == 200
    settings.RENSEI_METRICS_TOKEN = ""
    settings.DEBUG = False
    assert client.get("/metrics").status_code == 404  # no token in production: not served


@pytest.mark.django_db
def test_metrics_count_sessions_latency_retries_and_errors(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.RENSEI_METRICS_TOKEN = ""
    settings.DEBUG = True
    SessionFactory.create_batch(2, state=SessionState.RUNNING)
    SessionFactory.create(state=SessionState.FAILED)
    now = timezone.now()
    Session.objects.filter(state=SessionState.RUNNING).update(
        created_at=now - timedelta(seconds=3), started_at=now
    )
    ops.bump(ops.JOB_RETRY, "sessions.tasks.provision_session", by=2)
    ops.bump(ops.PROVIDER_ERROR, "503")
    text = client.get("/metrics").content.decode()
    assert 'rensei_sessions{state="running"} 2.0' in text
    assert 'rensei_sessions{state="failed"} 1.0' in text
    assert 'rensei_sessions{state="paused"} 0.0' in text
    assert 'rensei_provision_seconds_bucket{le="2.0"} 0.0' in text
    assert 'rensei_provision_seconds_bucket{le="5.0"} 2.0' in text
    assert "rensei_provision_seconds_count 2.0" in text
    assert 'rensei_job_retries_total{task="sessions.tasks.provision_session"} 2.0' in text
    assert 'rensei_provider_errors_total{status="503"} 1.0' in text
    assert 'rensei_queue_depth{queue="' in text


def test_request_id_is_kept_when_sane_and_made_otherwise(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234.abc").headers["X-Request-ID"] == (
        "lb-1234.abc"
    )
    made = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nforged: line").headers["X-Request-ID"]
    assert made != "bad id\nforged: line" and len(made) == 32


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger also writing JSON lines, as LOG_FORMAT=json configures it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_json_log_lines_carry_the_request_id_and_never_the_key(  # type: ignore[no-untyped-def]
    client_as, alice, json_log
) -> None:
    canary = f"e2b_CANARY_{secrets.token_hex(12)}"
    c = client_as(alice)
    logging.getLogger("django.request").info("before")
    resp = c.post("/settings/integrations/e2b/key/", {"secret": canary}, HTTP_X_REQUEST_ID="rq-7")
    assert resp.status_code == 302
    c.get("/no-such-page/", HTTP_X_REQUEST_ID="rq-8")  # django.request logs the 404
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert lines, "nothing was logged"
    assert canary not in json_log.getvalue()
    for entry in lines:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert entry["time"].endswith("+00:00")
    assert any(e.get("request_id") == "rq-8" and e["logger"] == "django.request" for e in lines)


def _logs_a_line(session_pk: int) -> None:
    logging.getLogger("sessions.jobs").warning("working on it")


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("no retries to give up on")


logging_job = provider_task(
    "tests.test_operations.logging_job", _logs_a_line, give_up=_never, max_retries=0
)


def test_json_log_lines_of_a_job_carry_its_session_id(json_log) -> None:  # type: ignore[no-untyped-def]
    assert logging_job.apply(args=(42,)).successful()
    logging.getLogger("sessions.jobs").warning("outside any job")
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    inside = next(e for e in lines if e["message"] == "working on it")
    outside = next(e for e in lines if e["message"] == "outside any job")
    assert inside["session_id"] == "42" and inside["level"] == "WARNING"
    assert "session_id" not in outside


def test_queue_depth_counts_waiting_jobs() -> None:
    # The run's own queue, which no worker of this test consumes.
    before = metrics.queue_depth()
    for _ in range(3):
        app.send_task("rensei.tasks.heartbeat")
    try:
        assert metrics.queue_depth() == before + 3
    finally:
        with app.connection_for_write() as conn:
            channel: Any = conn.default_channel  # kombu's virtual channel: it can purge
            channel.queue_purge(app.conf.task_default_queue)
