"""Which real services a test needs, and a loud failure in CI when one is missing.

Outside CI a test that needs PostgreSQL or Redis is skipped with the reason when the
service is absent; with ``CI`` set it fails instead, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection

IN_CI = bool(os.environ.get("CI"))


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def require_postgres() -> None:
    if connection.vendor != "postgresql":
        _missing("needs PostgreSQL: set DATABASE_URL=postgres://…")


@pytest.fixture
def redis_url() -> str:
    """The Redis URL the project is configured with, or the local default."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    parsed = urlparse(url)
    if not port_open(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        _missing(f"needs Redis at {url}")
    return url
