"""X-Forwarded-Proto is trusted only when RENSEI_TRUSTED_PROXY_SSL_HEADER says a proxy sets
it: otherwise a client on plain HTTP could claim HTTPS (and get HSTS, secure redirects and
secure cookies decided on its word)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import django; django.setup(); from django.conf import settings; "
    "print(repr(settings.SECURE_PROXY_SSL_HEADER))"
)


def _setting(tmp_path: Path, trusted: str | None) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "rensei.settings"}
    env["RENSEI_VAR_DIR"] = str(tmp_path)
    env.pop("RENSEI_TRUSTED_PROXY_SSL_HEADER", None)
    if trusted is not None:
        env["RENSEI_TRUSTED_PROXY_SSL_HEADER"] = trusted
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_the_header_is_trusted_only_when_the_environment_says_so(tmp_path: Path) -> None:
    assert _setting(tmp_path, None) == "None"
    assert _setting(tmp_path, "false") == "None"
    assert _setting(tmp_path, "true") == "('HTTP_X_FORWARDED_PROTO', 'https')"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("trusted", "hsts"),
    [pytest.param(None, False, id="no trusted proxy"), pytest.param(True, True, id="trusted")],
)
def test_a_client_cannot_fake_https_without_a_trusted_proxy(settings, trusted, hsts) -> None:  # type: ignore[no-untyped-def]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if trusted else None
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_SSL_REDIRECT = False
    response = Client().get(reverse("login"), HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert ("Strict-Transport-Security" in response.headers) is hsts
    # Plain HTTP without the header never gets HSTS either way.
    plain = Client().get(reverse("login"))
    assert "Strict-Transport-Security" not in plain.headers
