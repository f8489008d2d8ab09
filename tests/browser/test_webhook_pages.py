"""Settings → Webhooks in a real browser: make an endpoint with the keyboard-friendly form,
see its secret once, send a test event and watch the delivery log update by its poll,
without a reload; under the strict CSP and with no serious axe-core violations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from events.models import WebhookEndpoint
from events.tasks import drain_once
from tests.browser.conftest import assert_fields_named, axe_violations, describe, login
from tests.events.receiver import receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
  [e.violatedDirective, e.blockedURI, e.sourceFile + ':' + e.lineNumber].join(' | ')));
"""


def test_webhook_pages_end_to_end(live_server, page, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    page.add_init_script(RECORD)
    login(page, base, "alice", "pw-alice")
    problems: dict[str, list[str]] = {}
    with receiver() as rx:
        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
        problems["list (empty)"] = describe(axe_violations(page))

        page.get_by_role("link", name="New endpoint").click()
        assert assert_fields_named(page) >= 3
        problems["new"] = describe(axe_violations(page))
        page.get_by_label("URL").fill("ftp://nowhere")
        page.get_by_role("button", name="Create endpoint").click()
        expect(page.get_by_text("Only http:// and https:// URLs")).to_be_visible()
        page.get_by_label("URL").fill(rx.url)
        page.get_by_label(re.compile(r"^session\.ended")).check()
        page.get_by_role("button", name="Create endpoint").click()
        expect(page.get_by_text("Copy the signing secret now")).to_be_visible()
        secret = page.locator("#new-secret").input_value()
        endpoint = WebhookEndpoint.objects.get(org=org_a)
        assert secret.startswith("whsec_") and secret.endswith(endpoint.secret_last4)
        assert endpoint.event_types == ["session.ended"]
        problems["detail (new secret)"] = describe(axe_violations(page))

        page.get_by_role("button", name="Send test event").click()
        expect(page.get_by_text("Test event queued")).to_be_visible()
        assert secret not in page.content()  # shown once: gone on the next page
        expect(page.get_by_text("No deliveries yet.")).to_be_visible()
        drain_once(budget_seconds=10)
        # The delivery log's poll brings the attempt in without a reload.
        log = page.locator("#delivery-log")
        expect(log.get_by_text("webhook.test")).to_be_visible(timeout=15_000)
        expect(log.get_by_text("HTTP 200")).to_be_visible()
        assert rx.received and rx.received[0].signed_by(secret)
        problems["detail (log)"] = describe(axe_violations(page))

        page.get_by_role("link", name="Delete…").click()
        expect(page.get_by_text("This cannot be undone.")).to_be_visible()
        page.get_by_role("button", name="Delete endpoint").click()
        expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
    assert not WebhookEndpoint.objects.exists()
    assert {k: v for k, v in problems.items() if v} == {}
    assert page.evaluate("window.__csp || []") == []
