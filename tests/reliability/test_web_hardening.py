"""Web hardening: deploy checks, CSRF on every write, login throttling, security headers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from tests.reliability.routes import build_world, product_routes, snapshot, url_of
from tests.support import CsrfClient
from tests.test_foundation import (
    test_check_deploy_is_clean_with_production_settings as check_deploy_is_clean,
)

LOCKOUT_TEXT = "Too many failed login attempts. Try again in 15 minutes."
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@pytest.fixture
def world(org_a, alice, settings):  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = ""
    settings.E2B_API_URL = settings.E2B_SANDBOX_URL = "http://127.0.0.1:9"
    return build_world(org_a, alice, "ORGA")


def test_check_deploy(tmp_path, figure):  # type: ignore[no-untyped-def]
    fig = figure("check_deploy")
    fig.add()
    fig.unit = "run"
    check_deploy_is_clean(tmp_path)
    fig.details = {"issues reported": 0}


def test_every_write_without_a_csrf_token_is_refused(world, client_as, figure):  # type: ignore[no-untyped-def]
    fig = figure("csrf_htmx")
    admin = client_as(world.admin)
    before = snapshot(world)
    failures = []
    routes = [r for r in product_routes() if not r.is_api]
    for route in routes:
        url = url_of(route, world)
        for how in ("htmx", "plain"):
            data = {"command": "id", "timeout": "5", "name": "x", "secret": "e2b_x" * 4}
            if how == "htmx":
                resp = admin.htmx("post", url, data, csrf=False)
            else:
                resp = admin.post(url, data, csrf=False)
            fig.add()
            if resp.status_code != 403:
                failures.append(f"{how} POST {url} without a token: {resp.status_code}")
    # The same request with the token goes through (so the 403s above are CSRF's).
    accepted = admin.htmx(
        "post",
        reverse("api_token_create"),
        {"name": "with-token", "scopes": ["sessions:read", "sessions:write"]},
    )
    assert accepted.status_code == 200
    assert snapshot(world)["tokens"] != before["tokens"]
    fig.unit = "POST requests"
    fig.details = {"routes": len(routes), "not refused": len(failures)}
    assert not failures, "\n".join(failures)
    # Nothing the refused requests named changed (only the accepted token was added).
    after = snapshot(world)
    assert {k: v for k, v in after.items() if k not in ("tokens", "audit")} == {
        k: v for k, v in before.items() if k not in ("tokens", "audit")
    }
    assert after["audit"] == before["audit"] + 1


def _login(client: CsrfClient, username: str, password: str, **extra: Any) -> Any:
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def test_login_is_throttled_per_username_and_ip(alice, bob, figure):  # type: ignore[no-untyped-def]
    fig = figure("login_throttle")
    browser = CsrfClient()
    attempts = []
    for _ in range(4):
        resp = _login(browser, "alice", "wrong-password")
        attempts.append(resp.status_code)
        assert resp.status_code == 200
        assert "didn't match" in resp.content.decode()
    fifth = _login(browser, "alice", "wrong-password")
    assert fifth.status_code == 429, attempts
    assert LOCKOUT_TEXT in fifth.content.decode()
    # Locked: even the right password is refused, and no session is opened.
    right = _login(browser, "alice", "pw-alice")
    assert right.status_code == 429 and LOCKOUT_TEXT in right.content.decode()
    assert "_auth_user_id" not in browser.session
    # A spoofed X-Forwarded-For does not unlock it (axes reads REMOTE_ADDR only).
    spoofed = _login(browser, "alice", "pw-alice", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert spoofed.status_code == 429
    # Username + IP: Bob from the same IP and Alice from another IP still log in.
    assert _login(CsrfClient(), "bob", "pw-bob").status_code == 302
    elsewhere = _login(CsrfClient(), "alice", "pw-alice", REMOTE_ADDR="10.0.0.7")
    assert elsewhere.status_code == 302
    # Still locked after 14 minutes; free 15 minutes after the last try (a try while locked
    # out starts the cool-off again).
    with time_machine.travel(timezone.now() + timedelta(minutes=14)):
        assert _login(CsrfClient(), "alice", "pw-alice").status_code == 429
    with time_machine.travel(timezone.now() + timedelta(minutes=14 + 16)):
        assert _login(CsrfClient(), "alice", "pw-alice").status_code == 302
    fig.add(12)
    fig.unit = "login attempts"
    fig.details = {
        "failures before lockout": 4,
        "lockout status": 429,
        "cool-off (minutes)": 15,
        "lockout message": LOCKOUT_TEXT,
    }


def test_security_headers_on_every_page(world, client_as, staff_user, figure):  # type: ignore[no-untyped-def]
    fig = figure("security_headers")
    admin = client_as(world.admin)
    failures = []
    urls = ["/accounts/login/", "/api/v1/openapi.json", "/admin/", "/admin/login/"]
    for route in product_routes():
        if route.is_api:
            continue
        urls.append(url_of(route, world))
    clients = {"anonymous": CsrfClient(), "admin": admin, "staff": client_as(staff_user)}
    for who, client in clients.items():
        for url in urls:
            resp = client.get(url)
            fig.add()
            for header, value in HEADERS.items():
                if resp.get(header) != value:
                    failures.append(
                        f"{who} GET {url} ({resp.status_code}): {header}={resp.get(header)!r}"
                    )
    fig.unit = "responses"
    fig.details = {"headers checked": ", ".join(f"{k}: {v}" for k, v in HEADERS.items())}
    assert not failures, "\n".join(failures)


@pytest.fixture
def staff_user(db):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("sam", "sam@example.com", "pw-sam")
