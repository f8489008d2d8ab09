"""Secrets stay off every error page, whatever raised the error: here a bad ``Host`` header,
which fails in a middleware before the view's ``sensitive_post_parameters`` can mark
anything, with DEBUG on (technical pages on and off) and off."""

from __future__ import annotations

import secrets

import pytest
from django.test import Client
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from rensei.security import SecretsAlwaysHidden
from tests.factories import CapacityPoolFactory

pytestmark = pytest.mark.django_db

MODES = [
    pytest.param(True, True, id="DEBUG on, technical errors on"),
    pytest.param(True, False, id="DEBUG on, technical errors off"),
    pytest.param(False, False, id="DEBUG off"),
]


def _bad_host_post(url: str, data: dict[str, str]) -> str:
    client = Client(raise_request_exception=False)
    response = client.post(url, data, HTTP_HOST="evil.example")
    assert response.status_code == 400
    return response.content.decode(errors="replace")


@pytest.mark.parametrize(("debug", "technical"), MODES)
def test_a_bad_host_posting_secrets_shows_none_of_them(  # type: ignore[no-untyped-def]
    settings, org_a, debug: bool, technical: bool
) -> None:
    settings.DEBUG = debug
    settings.RENSEI_TECHNICAL_ERRORS = technical
    canary = f"e2b_CANARY_{secrets.token_hex(12)}"
    pool = CapacityPoolFactory.create(org=org_a)
    posts = [
        (reverse("integration_key", args=["e2b"]), {"secret": canary}),
        ("/admin/rensei/credential/add/", {"new_secret": canary, "provider": "e2b"}),
        (reverse("pool_detail", args=[pool.pk]), {"envVars": f"K={canary}"}),
        (reverse("pool_detail", args=[pool.pk]), {"raw_config": canary}),
        (reverse("login"), {"username": "a", "password": canary}),
        ("/sessions/new/", {"env": f"K={canary}", "api_token": canary}),
    ]
    for url, data in posts:
        body = _bad_host_post(url, {**data, "harmless": "visible-field"})
        assert canary not in body, (url, body[:300])
        if debug and technical:
            # Django's technical page, with the POST section listing the fields masked.
            assert "DisallowedHost" in body and "visible-field" in body
            assert "********************" in body


def test_the_stock_filter_shows_the_key_without_the_view_marks(rf) -> None:  # type: ignore[no-untyped-def]
    """What the project's filter changes: Django's own filter leaves an unmarked request's
    POST as it is (the request never reached the view that marks ``secret``)."""
    request = rf.post("/settings/integrations/e2b/key/", {"secret": "k3y", "name": "n"})
    assert SafeExceptionReporterFilter().get_post_parameters(request)["secret"] == "k3y"
    cleansed = SecretsAlwaysHidden().get_post_parameters(request)
    assert cleansed["secret"] != "k3y" and cleansed["name"] == "n"
