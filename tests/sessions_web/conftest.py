"""Fixtures for the session pages and the JSON API.

Read paths build sessions straight with the ORM (``make_session``): a page or an API
answer depends only on the rows. Writes go through the real service functions; in a
non-transactional test their jobs are never sent (``delay_on_commit``), so a test sees
exactly the state change a request made.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from pools.models import CapacityPool
from rensei.models import Channel, Organization
from rensei.tokens import SCOPES, create_token
from sessions.models import Session, SessionState
from tests.factories import CapacityPoolFactory, IssueFactory, SessionFactory, has_started

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


class ApiClient:
    """A client that speaks to /api/v1/ with a bearer token and JSON bodies, and enforces
    CSRF like a browser would (the API must not need it)."""

    def __init__(self, token: str | None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.token = token

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {self.token}"} if self.token else {}
        headers.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in extra.items()})
        return headers

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(path, params or {}, **self._headers(headers))  # type: ignore[arg-type]

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        raw: str | bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Any:
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.post(
            path,
            data,
            content_type=content_type,
            **self._headers(headers or {}),  # type: ignore[arg-type]
        )


@pytest.fixture
def token_a(org_a: Organization) -> str:
    _, plaintext = create_token(org_a, "dispatcher", None, Channel.CLI, scopes=SCOPES)
    return plaintext


@pytest.fixture
def api(token_a: str) -> ApiClient:
    return ApiClient(token_a)


@pytest.fixture
def api_b(org_b: Organization) -> ApiClient:
    _, plaintext = create_token(org_b, "dispatcher-b", None, Channel.CLI, scopes=SCOPES)
    return ApiClient(plaintext)


@pytest.fixture
def pool_a(org_a: Organization) -> CapacityPool:
    return CapacityPoolFactory.create(org=org_a, name="e2b-main", order=1)


def make_session(
    org: Organization,
    state: str = SessionState.RUNNING,
    *,
    issue: str | None = "ENG-142",
    pool: CapacityPool | None = None,
    transitions: list[tuple[str, str, datetime]] | None = None,
    **fields: Any,
) -> Session:
    """A session row as the engine would leave it (provider e2b, a sandbox when started)."""
    kinds: dict[str, Any] = {"runtime_kinds": ["npm"], "requirement_kinds": ["git"]}
    return SessionFactory.create(
        org=org,
        state=state,
        issue=IssueFactory.create(org=org, key=issue) if issue else None,
        pool=pool,
        transitions=transitions,
        started=has_started(state),
        **(kinds | fields),
    )


@pytest.fixture
def session_factory(org_a: Organization) -> Callable[..., Session]:
    def make(state: str = SessionState.RUNNING, **kwargs: Any) -> Session:
        org = kwargs.pop("org", org_a)
        return make_session(org, state, **kwargs)

    return make


def standard_timeline() -> list[tuple[str, str, datetime]]:
    """queued → provisioning → running → pausing → paused, a known number of seconds apart."""
    return [
        ("", "queued", T0),
        ("queued", "provisioning", T0 + timedelta(seconds=1)),
        ("provisioning", "running", T0 + timedelta(seconds=4)),
        ("running", "pausing", T0 + timedelta(minutes=3, seconds=4)),
        ("pausing", "paused", T0 + timedelta(minutes=3, seconds=5)),
    ]


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    """These tests log in with force_login; hashing the fixture users' passwords slowly
    would only cost time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
