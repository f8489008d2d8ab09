"""Canaries, a key entered in Settings → Integrations, an API token created on its page, a
pool env value and a webhook's signing secrets (made and rotated on its pages, then used to
sign real deliveries to a loopback receiver), followed across the whole product: every page
every role (and staff, in the Django admin) can open, every log record at DEBUG, every
message sent to the broker, every audit row, a full ``dumpdata``, and the error pages with
DEBUG on and off.

The session the token creates runs its jobs in this process against the emulator with the
canary key, so the provider's and the SDK's logging is inside the net too.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
from typing import Any

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import NoReverseMatch, reverse
from kombu.messaging import Producer

from events.models import WebhookEndpoint
from events.tasks import drain_once
from pools.config import validate_e2b_config
from pools.models import CapacityPool
from rensei.models import AuditEvent, Role
from sessions import jobs
from sessions.models import CommandRun, Session
from tests.events.receiver import Received, receiver
from tests.factories import CapacityPoolFactory, MembershipFactory
from tests.reliability.routes import build_world, product_routes, url_of
from tests.support import CsrfClient

TOKEN_RE = re.compile(r'id="new-token"[^>]*value="(rsn_[^"]+)"')
SECRET_RE = re.compile(r'id="new-secret"[^>]*value="(whsec_[^"]+)"')


@pytest.fixture
def net(monkeypatch, caplog):  # type: ignore[no-untyped-def]
    """Every log record at DEBUG (SQL too) and every message published to the broker."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setattr(connections["default"], "force_debug_cursor", True)
    published: list[str] = []

    def publish(self: Producer, body: Any, *args: Any, **kwargs: Any) -> None:
        published.append(json.dumps([body, args, kwargs], default=repr))

    monkeypatch.setattr(Producer, "publish", publish)
    return published


def _admin_urls() -> list[str]:
    """The admin index, each app index, and each registered model's pages for its rows."""
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        meta = model._meta
        prefix = f"admin:{meta.app_label}_{meta.model_name}"
        urls.append(reverse("admin:app_list", args=[meta.app_label]))
        urls.append(reverse(f"{prefix}_changelist"))
        urls.append(reverse(f"{prefix}_add"))
        for obj in model._default_manager.all()[:5]:
            for page in ("change", "history", "delete"):
                try:
                    urls.append(reverse(f"{prefix}_{page}", args=[obj.pk]))
                except NoReverseMatch:
                    continue
    return sorted(set(urls))


def _drive_session(api: Client, pool: CapacityPool) -> Session:
    """Create, exec, pause, resume and terminate a session through the API, running each
    job here (the jobs resolve the org's key: the canary)."""
    body = {
        "issue": {"key": "CANARY-1"},
        "runtime_kinds": ["npm"],
        "requirement_kinds": ["git"],
        "pool": pool.name,
        "env": {"GREETING": "hello"},
    }
    created = api.post(reverse("api_sessions"), json.dumps(body), "application/json")
    assert created.status_code == 202, created.content
    session = Session.objects.get(pk=created.json()["id"])
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == "running", session.last_error
    ran = api.post(
        reverse("api_session_exec", args=[session.pk]),
        json.dumps({"command": "echo $GREETING"}),
        "application/json",
    )
    assert ran.status_code == 202, ran.content
    jobs.exec_command(ran.json()["id"])
    assert CommandRun.objects.get(pk=ran.json()["id"]).stdout == "hello\n"
    for action, job in (("pause", jobs.pause), ("resume", jobs.resume), ("terminate", None)):
        resp = api.post(reverse(f"api_session_{action}", args=[session.pk]))
        assert resp.status_code == 202, resp.content
        (job or jobs.terminate)(session.pk)
    session.refresh_from_db()
    assert session.state == "terminated"
    return session


def test_canaries_appear_nowhere(  # type: ignore[no-untyped-def]
    org_a,
    alice,
    bob,
    fiona,
    client_as,
    e2b_settings,
    net,
    caplog,
    figure,
    django_capture_on_commit_callbacks,
):
    fig = figure("canary_secret")
    world = build_world(org_a, alice, "ORGA")
    key = f"e2b_CANARY_{secrets.token_hex(16)}"
    web = client_as(alice)
    counts: dict[str, int] = {}

    with django_capture_on_commit_callbacks(execute=True):
        saved = web.htmx("post", reverse("integration_key", args=["e2b"]), {"secret": key})
        assert saved.status_code == 200
        tested = web.htmx("post", reverse("integration_test", args=["e2b"]))
        assert "Connection OK" in tested.content.decode()
        created = web.htmx(
            "post",
            reverse("api_token_create"),
            {
                "name": "canary token",
                "scopes": ["sessions:read", "sessions:write", "sessions:exec"],
            },
        )
    token_match = TOKEN_RE.search(created.content.decode())
    assert token_match, "the new token is shown once, on creation"
    token = token_match.group(1)
    # A pool env value: encrypted at rest, handed to the sandbox, shown nowhere.
    pool_env = f"POOLENV_CANARY_{secrets.token_hex(16)}"
    canaries = {"key": key, "token": token, "pool env value": pool_env}

    pool = CapacityPoolFactory.create(
        org=org_a,
        name="canary-pool",
        provider="e2b",
        config=validate_e2b_config(
            {"templateId": "donmai-worker", "envVars": {"POOL_CANARY": pool_env}}
        ),
    )
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    with receiver() as rx:
        # A webhook endpoint to the receiver: its secret, then a rotated one (both sign).
        made = web.post(reverse("webhook_new"), {"url": rx.url, "enabled": "on"})
        hook_match = SECRET_RE.search(made.content.decode())
        assert hook_match, "the signing secret is shown once, on creation"
        endpoint = WebhookEndpoint.objects.get(org=org_a, url=rx.url)
        rotated = web.post(reverse("webhook_rotate", args=[endpoint.pk]), {"overlap_hours": "2"})
        rotated_match = SECRET_RE.search(rotated.content.decode())
        assert rotated_match, "the rotated secret is shown once"
        canaries["webhook signing secret"] = hook_match.group(1)
        canaries["rotated webhook signing secret"] = rotated_match.group(1)
        with django_capture_on_commit_callbacks(execute=True):
            driven = _drive_session(api, pool)
        drain_once(budget_seconds=30)
        deliveries: list[Received] = list(rx.received)
    # The deliveries were really signed with both secrets, so signing had a chance to leak.
    assert deliveries and all(
        r.signed_by(canaries["webhook signing secret"])
        and r.signed_by(canaries["rotated webhook signing secret"])
        for r in deliveries
    )
    # The key really went to E2B (the emulator), so the logs had a chance to see it.
    sent_keys = {c.request_headers.get("x-api-key") for c in e2b_settings.emulator.calls}
    assert key in sent_keys

    leaks: list[str] = []

    def scan(where: str, text: str) -> None:
        counts[where.split(":")[0]] = counts.get(where.split(":")[0], 0) + 1
        for name, value in canaries.items():
            if value in text:
                leaks.append(f"the {name} is in {where}")

    # Pages: every GET route as each role, the session the token made, and the admin.
    staff = _staff(org_a)
    people = {"admin": alice, "member": bob, "finance": fiona, "staff": staff}
    urls = [url_of(r, world) for r in product_routes() if not r.is_api]
    urls += [
        reverse("session_detail", args=[driven.pk]),
        reverse("pool_detail", args=[pool.pk]),  # the pool the env canary is in (edit form too)
        f"{reverse('cost_per_issue')}?format=csv",
    ]
    for role, user in people.items():
        browser = client_as(user)
        for url in urls:
            resp = browser.get(url)
            assert resp.status_code < 500, (role, url, resp.status_code)
            scan(f"pages: {role} GET {url}", resp.content.decode(errors="replace"))
    staff_browser = client_as(staff)
    for url in _admin_urls():
        resp = staff_browser.get(url)
        assert resp.status_code < 500, (url, resp.status_code)
        scan(f"admin pages: GET {url}", resp.content.decode(errors="replace"))
    for url in (reverse("api_sessions"), reverse("api_session", args=[driven.pk])):
        scan(f"API responses: GET {url}", api.get(url).content.decode())
    reader = Client(HTTP_AUTHORIZATION=f"Bearer {world.token_plaintext}")
    for url in (
        reverse("api_events") + "?limit=500",
        reverse("api_webhooks"),
        reverse("api_webhook", args=[endpoint.pk]),
        reverse("api_webhook_deliveries", args=[endpoint.pk]),
        reverse("webhook_detail", args=[endpoint.pk]),
    ):
        resp = reader.get(url) if url.startswith("/api/") else client_as(alice).get(url)
        assert resp.status_code == 200, (url, resp.status_code)
        scan(f"webhooks and events: GET {url}", resp.content.decode())
    for delivered in deliveries:
        scan("webhook deliveries: a POSTed body", delivered.body.decode())

    # Error pages: a failure while saving a key, and while answering the token's request.
    for debug in (True, False):
        for where, text in _error_pages(client_as(alice), token, key, debug, e2b_settings):
            scan(f"error pages: {where}", text)

    # Audit rows, the broker, a full dump, the logs.
    for event in AuditEvent.objects.all():
        scan(f"audit rows: {event.action}", json.dumps([event.target, event.detail], default=str))
    assert net, "nothing was published: the broker check would prove nothing"
    for message in net:
        scan("broker messages: a published task", message)
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    scan("dumpdata: the whole database", dump.getvalue())
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    for record in caplog.records:
        text = f"{record.name} {record.getMessage()} {record.args!r} {record.exc_text or ''}"
        scan(f"log records: {record.name}", text)

    fig.add(sum(counts.values()))
    fig.unit = "places"
    fig.details = {
        "places checked": counts,
        "roles walked": ", ".join(people),
        "occurrences": len(leaks),
    }
    assert not leaks, "\n".join(leaks[:50])


def _staff(org: Any) -> Any:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser("sam", "sam@example.com", "pw-sam")
    MembershipFactory.create(user=user, org=org, role=Role.ADMIN)
    return user


def _error_pages(
    browser: CsrfClient, token: str, key: str, debug: bool, emulator: Any
) -> list[tuple[str, str]]:
    """500s with the canaries in the request: DEBUG's technical page and the plain one."""
    import pytest as _pytest

    from rensei import credentials
    from sessions import api as api_module

    pages = []
    with _pytest.MonkeyPatch.context() as patch:
        from django.conf import settings

        patch.setattr(settings, "DEBUG", debug)
        # Django's technical 500 page (DEBUG with technical errors on) is the worst case.
        patch.setattr(settings, "RENSEI_TECHNICAL_ERRORS", debug)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the disk is full")

        patch.setattr(credentials, "encrypt", broken)
        patch.setattr(api_module, "session_json", broken)
        browser.raise_request_exception = False
        resp = browser.post(reverse("integration_key", args=["e2b"]), {"secret": key})
        assert resp.status_code == 500
        pages.append((f"POST key, DEBUG={debug}", resp.content.decode(errors="replace")))
        api = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)
        resp = api.get(reverse("api_sessions"))
        assert resp.status_code == 500
        pages.append((f"GET API with the token, DEBUG={debug}", resp.content.decode()))
        # The API answers its own JSON error even with DEBUG on (never a traceback page).
        assert resp.json() == {"error": "Something went wrong on our side; the error was logged."}
    return pages
