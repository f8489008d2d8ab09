"""The product's own error pages under the demo's settings (DEBUG on), and a favicon.

pytest-django runs tests with DEBUG off; these switch it on as ``make run`` has it, where
Django would otherwise answer with its technical pages (every URL pattern, tracebacks).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path

from rensei.models import Channel
from rensei.tokens import create_token

pytestmark = pytest.mark.django_db

PRODUCT_404 = "There is nothing here."
TECHNICAL = ("URL patterns", "URLconf", "DEBUG = True", "Traceback", "technical")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the kettle is on fire")


def bad(request: HttpRequest) -> HttpResponse:
    raise SuspiciousOperation("a forged header")


class FailingMiddleware:
    """A middleware that fails on /mw-boom/ (after ProductErrorPages in the chain)."""

    def __init__(self, get_response):  # type: ignore[no-untyped-def]
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/mw-boom/":
            raise RuntimeError("the middleware is on fire")
        return self.get_response(request)


# A URLconf with failing views in front of the product's own (used by the 400/500 tests).
urlpatterns = [path("boom/", boom), path("bad/", bad), path("", include("rensei.urls"))]


@pytest.fixture
def demo(settings):  # type: ignore[no-untyped-def]
    settings.DEBUG = True
    settings.RENSEI_TECHNICAL_ERRORS = False
    return settings


def _assert_product_404(response: Any) -> None:
    body = response.content.decode()
    assert response.status_code == 404
    assert PRODUCT_404 in body
    for word in TECHNICAL:
        assert word not in body


@pytest.mark.parametrize(
    "url", ["/sessions/999999/", "/analytics/issues/NOPE-1/", "/no/such/page/"]
)
def test_missing_things_answer_the_products_404(demo, client_as, alice, url) -> None:  # type: ignore[no-untyped-def]
    _assert_product_404(client_as(alice).get(url))


def test_a_forbidden_page_answers_the_products_403(demo, client_as, bob) -> None:  # type: ignore[no-untyped-def]
    response = client_as(bob).get("/settings/integrations/")
    body = response.content.decode()
    assert response.status_code == 403 and "Your role does not allow this" in body
    assert "DEBUG = True" not in body


def test_anonymous_unknown_path_gets_the_products_404(demo) -> None:  # type: ignore[no-untyped-def]
    _assert_product_404(Client().get("/nothing-here/"))


def test_a_missing_slash_still_redirects(demo, client_as, alice) -> None:  # type: ignore[no-untyped-def]
    response = client_as(alice).get("/sessions/999999")
    assert response.status_code == 301 and response["Location"] == "/sessions/999999/"


def test_the_api_keeps_its_json_404(demo, org_a) -> None:  # type: ignore[no-untyped-def]
    _, token = create_token(org_a, "dispatcher", None, Channel.CLI)
    response = Client().get("/api/v1/sessions/999999/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()


def test_a_crash_shows_the_products_500_and_logs_the_traceback(demo, caplog) -> None:  # type: ignore[no-untyped-def]
    demo.ROOT_URLCONF = __name__
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = Client(raise_request_exception=False).get("/boom/")
    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in body
    assert "kettle" not in body and "Traceback" not in body
    logged = [r for r in caplog.records if r.getMessage() == "Internal Server Error: /boom/"]
    assert len(logged) == 1  # once, with the traceback
    assert logged[0].exc_info is not None and "kettle" in str(logged[0].exc_info[1])


def test_a_crash_in_a_middleware_shows_the_products_500(demo) -> None:  # type: ignore[no-untyped-def]
    demo.MIDDLEWARE = [*demo.MIDDLEWARE, f"{__name__}.FailingMiddleware"]
    response = Client(raise_request_exception=False).get("/mw-boom/")
    body = response.content.decode()
    assert response.status_code == 500 and "Something went wrong" in body
    assert "on fire" not in body and "Traceback" not in body


def test_a_bad_request_is_a_plain_400_not_the_technical_page(demo, caplog) -> None:  # type: ignore[no-untyped-def]
    demo.ROOT_URLCONF = __name__
    response = Client().get("/bad/")
    body = response.content.decode()
    assert response.status_code == 400
    assert "forged" not in body and "Traceback" not in body and "DEBUG = True" not in body
    assert any("a forged header" in r.getMessage() for r in caplog.records)


def test_developers_can_ask_for_the_technical_pages(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = True
    settings.RENSEI_TECHNICAL_ERRORS = True
    response = Client().get("/no/such/page/")
    assert response.status_code == 404
    assert "URL patterns" in response.content.decode()


def test_favicon(client_as, alice) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/favicon.ico")
    assert response.status_code in (301, 302)
    assert response["Location"].endswith("favicon.svg")
    assert finders.find("favicon.svg")
    page = client_as(alice).get("/").content.decode()
    assert 'rel="icon"' in page and "favicon.svg" in page
