"""50 concurrent users for 2 minutes against gunicorn on loopback, production settings.

gunicorn runs the project as the Procfile does (2 workers, gthread), with DEBUG off and the
collected static files, on the test database. Each virtual user is a thread with its own
HTTP client and logged-in session (admins, finance, members) or the org's API token, and
loops over the main pages, the htmx status partial and the API. Every response must be the
expected one (no 5xx, no 4xx, no connection error); p50 and p95 are published.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from rensei.models import Membership, Role
from sessions.intervals import close_open_interval, open_interval
from tests.reliability.routes import _session, build_world
from tests.worker import ARTIFACTS, database_url

USERS = 50
DURATION = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "120"))
SEED = 7
pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(tmp: Path, keys: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_"))}
    env.update(
        {
            "DEBUG": "false",
            # The sessions minted here are bound to this key.
            "SECRET_KEY": settings.SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "SECURE_HSTS_SECONDS": "0",
            "RENSEI_ENCRYPTION_KEYS": ",".join(keys),
            "RENSEI_VAR_DIR": str(tmp),
            "DATABASE_URL": database_url(connection.settings_dict),  # type: ignore[arg-type]
            "LOG_LEVEL": "WARNING",
            "E2B_API_URL": "http://127.0.0.1:9",
            "E2B_SANDBOX_URL": "http://127.0.0.1:9",
        }
    )
    return env


def _start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        timeout=300,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = (ARTIFACTS / "load-gunicorn.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "rensei.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "8",
            "--worker-class",
            "gthread",
            "--timeout",
            "60",
            # Else it takes over the user-wide control socket of any other gunicorn here.
            "--no-control-socket",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("gunicorn did not answer within 60 s")


def _session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def test_fifty_users_for_two_minutes(org_a, alice, settings, tmp_path, figure):  # type: ignore[no-untyped-def]
    fig = figure("load")
    keys = [Fernet.generate_key().decode()]
    settings.RENSEI_ENCRYPTION_KEYS = keys
    world = build_world(org_a, alice, "ORGA")
    # Rows enough for the lists to paginate: 60 sessions with billed time.
    start = timezone.now() - timedelta(days=3)
    for n in range(60):
        session = _session(org_a, world.pool, world.issue, "terminated", f"sbx-load-{n}")
        open_interval(session, start + timedelta(minutes=n))
        close_open_interval(session, start + timedelta(minutes=n + 7), "terminate")

    roles = [Role.ADMIN, Role.FINANCE, Role.MEMBER]
    users: list[tuple[str, str]] = []
    for n in range(USERS - 10):
        user = get_user_model().objects.create_user(f"load{n}")
        Membership.objects.create(user=user, org=org_a, role=roles[n % 3])
        users.append((roles[n % 3], _session_cookie(user)))
    users += [("api", world.token_plaintext)] * 10

    # (label, path): labels name the page, so the published figures do not carry row ids.
    pages: dict[str, list[tuple[str, str]]] = {
        Role.ADMIN: [
            ("dashboard", reverse("dashboard")),
            ("session list", reverse("session_list")),
            ("session detail", reverse("session_detail", args=[world.session.pk])),
            ("capacity", reverse("capacity")),
            ("pool detail", reverse("pool_detail", args=[world.pool.pk])),
            ("ledger", reverse("ledger")),
            ("cost per issue", reverse("cost_per_issue")),
            ("integrations", reverse("integrations")),
            ("API tokens", reverse("api_tokens")),
        ],
        Role.FINANCE: [
            ("dashboard", reverse("dashboard")),
            ("ledger", reverse("ledger")),
            ("cost per issue", reverse("cost_per_issue")),
            ("cost per issue CSV", f"{reverse('cost_per_issue')}?format=csv"),
            ("issue cost", reverse("issue_cost", args=[world.issue.key])),
            ("session list", reverse("session_list")),
        ],
        Role.MEMBER: [
            ("dashboard", reverse("dashboard")),
            ("session list", reverse("session_list")),
            ("session detail", reverse("session_detail", args=[world.session.pk])),
            ("session status (htmx)", reverse("session_status", args=[world.paused_session.pk])),
            ("capacity", reverse("capacity")),
        ],
        "api": [
            ("API session list", reverse("api_sessions")),
            ("API session", reverse("api_session", args=[world.session.pk])),
            ("API filtered list", f"{reverse('api_sessions')}?state=terminated&limit=50"),
        ],
    }
    port = _free_port()
    proc = _start_gunicorn(_server_env(tmp_path, keys), port)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + DURATION

    def user_loop(index: int, role: str, secret: str) -> None:
        rng = random.Random(SEED + index)
        headers = {"Authorization": f"Bearer {secret}"} if role == "api" else {}
        cookies = {} if role == "api" else {settings.SESSION_COOKIE_NAME: secret}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=headers, cookies=cookies, timeout=30
        ) as client:
            while time.monotonic() < stop_at:
                label, path = rng.choice(pages[role])
                extra = {"HX-Request": "true"} if "htmx" in label else {}
                began = time.perf_counter()
                try:
                    response = client.get(path, headers=extra)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status, response = 0, None
                    with lock:
                        errors.append(f"{role} {path}: {type(exc).__name__}")
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    latencies[label].append(elapsed)
                    if status not in (200, 286) and response is not None:
                        errors.append(f"{role} {path}: {status}")

    threads = [
        threading.Thread(target=user_loop, args=(i, role, secret), daemon=True)
        for i, (role, secret) in enumerate(users)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DURATION + 60)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    every = sorted(v for values in latencies.values() for v in values)
    total = len(every)
    p95 = quantiles(every, n=20)[-1] if total > 1 else 0.0
    fig.add(total)
    fig.unit = "requests"
    fig.details = {
        "virtual users": len(users),
        "duration (s)": DURATION,
        "requests per second": round(total / DURATION, 1),
        "errors": len(errors),
        "p50 (ms)": round(median(every), 1) if every else 0,
        "p95 (ms)": round(p95, 1),
        "server": "gunicorn, 2 gthread workers × 8 threads, DEBUG off, " + connection.vendor,
        "p50 / p95 per page (ms)": {
            page: f"{median(v):.0f} / {quantiles(v, n=20)[-1]:.0f}" if len(v) > 1 else "–"
            for page, v in sorted(latencies.items())
        },
    }
    assert total > 0
    assert not errors, "\n".join(errors[:30])
