"""What a person and the dispatcher see while the database or the broker does not answer.

The database "goes away" at each place a request meets it first: the login session read in
a middleware, a view's query, the API's token look-up. With DEBUG on (the demo) and off
(production): pages answer the product's 503 page with ``Retry-After``, the API a JSON error
with ``Retry-After``, never a traceback or Django's technical page. A bug that merely looks
like a database error (SQLite's "no such table") stays a 500, so outages do not hide bugs.

The broker going away while a person pauses a session: the pause is accepted (the session
is ``pausing``, the change committed) and the intent sweep sends its job once the broker
answers again.
"""

from __future__ import annotations

import sqlite3
from typing import Any, cast
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client, override_settings
from kombu.exceptions import OperationalError as BrokerDown

from rensei.models import Channel, Organization
from rensei.tokens import SCOPES, create_token
from sessions import intents
from sessions.models import Session, SessionState
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db
S = SessionState

DOWN = OperationalError('connection to server at "127.0.0.1", port 5432 failed: refused')


def _page_is_503(response: Any) -> None:
    body = response.content.decode()
    assert response.status_code == 503, body[:300]
    assert response["Retry-After"] == "5"
    assert "Rensei is briefly unavailable" in body
    assert "Traceback" not in body and "OperationalError" not in body
    assert "5432" not in body


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
@pytest.mark.parametrize("where", ["middleware (login session)", "dashboard view"])
def test_pages_answer_the_product_503_page(
    where: str, debug: bool, alice: Any, client: Client
) -> None:
    client.force_login(alice)
    target = {
        "middleware (login session)": "rensei.middleware.active_membership",
        "dashboard view": "sessions.views.services.dashboard_counts",
    }[where]
    with override_settings(DEBUG=debug), mock.patch(target, side_effect=DOWN):
        client.raise_request_exception = False
        response = client.get("/")
    _page_is_503(response)


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_api_answers_503_json_with_retry_after(debug: bool, org_a: Organization) -> None:
    _, token = create_token(org_a, "dispatcher", None, Channel.CLI, scopes=SCOPES)
    client = Client(raise_request_exception=False)
    with (
        override_settings(DEBUG=debug),
        mock.patch("sessions.api_base.token_for", side_effect=DOWN),
    ):
        response = client.get("/api/v1/sessions", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert response.json() == {"error": response.json()["error"]}
    assert "briefly unavailable" in response.json()["error"]
    assert "5432" not in response.content.decode()


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_an_api_bug_is_a_json_500_never_a_traceback(debug: bool, org_a: Organization) -> None:
    _, token = create_token(org_a, "dispatcher", None, Channel.CLI, scopes=SCOPES)
    client = Client(raise_request_exception=False)
    bug = RuntimeError("a bug with a secret-looking detail e2b_abcdef")
    buggy = mock.patch("sessions.api_base.token_for", side_effect=bug)
    with override_settings(DEBUG=debug), buggy:
        response = client.get("/api/v1/sessions", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert "Traceback" not in response.content.decode()
    assert "e2b_abcdef" not in response.content.decode()


def test_sqlite_missing_table_stays_a_500(alice: Any, client: Client) -> None:
    """Not an outage: a migration was not run. It must not hide as "briefly unavailable"."""
    client.force_login(alice)
    bug = OperationalError("no such table: budgets_budget")
    bug.__cause__ = sqlite3.OperationalError("no such table: budgets_budget")
    client.raise_request_exception = False
    with mock.patch("sessions.views.services.dashboard_counts", side_effect=bug):
        response = client.get("/")
    assert response.status_code == 500


def test_a_pause_while_the_broker_is_down_is_sent_by_the_sweep(
    alice: Any, client: Client, org_a: Organization
) -> None:
    session = cast(Session, SessionFactory(org=org_a, state=S.RUNNING, sandbox_id="sbx-1"))
    client.force_login(alice)
    sent: list[tuple[str, tuple[Any, ...]]] = []

    def broker_down(name: str, args: tuple[Any, ...]) -> Any:
        signature = mock.Mock()
        signature.delay.side_effect = BrokerDown("Error 111 connecting to 127.0.0.1:6379.")
        return signature

    with (
        mock.patch("sessions.enqueue.app.signature", side_effect=broker_down),
        mock.patch("sessions.enqueue.transaction.on_commit", side_effect=lambda f: f()),
    ):
        response = client.post(f"/sessions/{session.pk}/pause/", HTTP_HX_REQUEST="true")
    assert response.status_code in (200, 302), response.content[:300]
    session.refresh_from_db()
    assert session.state == S.PAUSING  # accepted and committed

    def record(name: str, args: tuple[Any, ...]) -> Any:
        sent.append((name, args))
        return mock.Mock()

    later = session.state_changed_at + intents.GRACE * 3
    with (
        mock.patch("sessions.intents.queue_depth", return_value=0.0),
        mock.patch("sessions.intents.app.signature", side_effect=record),
    ):
        assert intents.sweep(now=later)["resent"] == 1
        assert intents.sweep(now=later)["resent"] == 0  # claimed: sent once
    assert sent == [("sessions.tasks.pause_session", (session.pk,))]
    assert Session.objects.get(pk=session.pk).state == S.PAUSING
