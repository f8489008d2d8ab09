"""The demo receiver: the demo org's endpoint points at it, and it logs each signed event."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from events import demo
from events.management.commands.demo_webhook_receiver import PATH, _handler, stop_on_sigterm
from events.models import WebhookEndpoint
from events.outbox import emit
from events.tasks import drain_once
from events.types import POOL_HEALTH_CHANGED
from rensei.demo import DEMO_ORG_SLUG
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_receiver_logs_signed_events() -> None:
    org = OrganizationFactory.create(slug=DEMO_ORG_SLUG, name="Demo")
    first = demo.ensure_demo_endpoint(org)
    assert demo.ensure_demo_endpoint(org) == first  # a second seed changes nothing
    lines = io.StringIO()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(lambda s: lines.write(s + "\n")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{PATH}"
        assert demo.point_at(url) == [first]
        emit(org.pk, POOL_HEALTH_CHANGED, {"pool": {"name": "demo-e2b"}})
        drain_once(budget_seconds=10)
    finally:
        server.shutdown()
        server.server_close()
    assert WebhookEndpoint.objects.get().url == url
    assert "received pool.health_changed" in lines.getvalue()
    assert "signature ok" in lines.getvalue()


def test_a_demo_org_seeded_before_webhooks_gets_its_endpoint() -> None:
    OrganizationFactory.create(slug=DEMO_ORG_SLUG, name="Demo")
    assert not WebhookEndpoint.objects.exists()
    [made] = demo.point_at("http://127.0.0.1:9/demo-webhooks")
    assert made.description == demo.DESCRIPTION and made.enabled


def test_the_receiver_stops_on_sigterm_as_on_ctrl_c() -> None:
    """make run's supervisor stops it with SIGTERM: that must end serve_forever the way
    Ctrl-C does (the server closed, exit 0), not kill the process."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; never reached
    finally:
        signal.signal(signal.SIGTERM, before)
