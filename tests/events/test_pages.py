"""Settings → Webhooks: admins only, org walls, bad input, the secret shown once, the log."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from django.urls import reverse

from events import endpoints
from events.delivery import deliver_due
from events.models import Delivery, DeliveryAttempt, WebhookEndpoint
from events.outbox import emit
from events.publish import publish
from events.types import POOL_HEALTH_CHANGED
from rensei.models import AuditEvent, Channel, Organization
from tests.events.receiver import receiver

pytestmark = pytest.mark.django_db


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "url": "http://127.0.0.1:9/hooks",
        "description": "dispatcher",
        "event_types": ["session.ended", "sandbox.cost"],
        "enabled": "on",
    }
    data.update(overrides)
    return data


def test_create_shows_the_secret_once(alice, client_as, org_a: Organization) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice)
    assert "No webhook endpoints yet" in client.get(reverse("webhook_list")).content.decode()
    resp = client.post(reverse("webhook_new"), body())
    assert resp.status_code == 200
    page = resp.content.decode()
    endpoint = WebhookEndpoint.objects.get(org=org_a)
    assert "Copy the signing secret now" in page
    field = 'id="new-secret" class="form-control font-monospace" type="text" value="'
    secret = page.split(field)[1].split('"')[0]
    assert secret.startswith("whsec_") and secret.endswith(endpoint.secret_last4)
    assert secret not in endpoint.secret_encrypted
    assert resp["Cache-Control"].startswith("max-age=0") or "no-cache" in resp["Cache-Control"]
    assert endpoint.event_types == ["session.ended", "sandbox.cost"]
    again = client.get(reverse("webhook_detail", args=[endpoint.pk])).content.decode()
    assert secret not in again and f"••••{endpoint.secret_last4}" in again
    listing = client.get(reverse("webhook_list")).content.decode()
    assert "http://127.0.0.1:9/hooks" in listing and secret not in listing
    audit = AuditEvent.objects.get(action="webhook.created")
    assert secret not in str(audit.detail) and secret not in audit.target


@pytest.mark.parametrize(
    ("overrides", "field", "said"),
    [
        ({"url": ""}, "url", "Give the URL"),
        ({"url": "ftp://example.com/x"}, "url", "Only http:// and https://"),
        ({"url": "http://10.1.2.3/x"}, "url", "private address"),
        ({"url": "http://169.254.169.254/latest"}, "url", "link-local"),
        ({"event_types": ["session.exploded"]}, "event_types", "Unknown event type"),
        ({"description": "x" * 201}, "description", "too long"),
    ],
)
def test_bad_input_is_a_400_with_the_fields_message(  # type: ignore[no-untyped-def]
    alice, client_as, overrides: dict[str, Any], field: str, said: str
) -> None:
    resp = client_as(alice).post(reverse("webhook_new"), body(**overrides))
    assert resp.status_code == 400
    assert said in resp.content.decode()
    assert not WebhookEndpoint.objects.exists()


@override_settings(RENSEI_WEBHOOKS_ALLOW_LOOPBACK=False)
def test_loopback_is_refused_in_production_settings(alice, client_as) -> None:  # type: ignore[no-untyped-def]
    resp = client_as(alice).post(reverse("webhook_new"), body(url="http://localhost:9/x"))
    assert resp.status_code == 400 and "loopback" in resp.content.decode()


def _endpoint(org: Organization) -> WebhookEndpoint:
    endpoint, _ = endpoints.create_endpoint(org, url="http://127.0.0.1:9/h", channel=Channel.WEB)
    return endpoint


def test_only_admins_and_only_their_org(  # type: ignore[no-untyped-def]
    alice, bob, fiona, charlie, client_as, org_a: Organization
) -> None:
    endpoint = _endpoint(org_a)
    emit(org_a.pk, POOL_HEALTH_CHANGED, {})
    publish()
    delivery = Delivery.objects.get()
    gets = [
        reverse("webhook_list"),
        reverse("webhook_new"),
        reverse("webhook_detail", args=[endpoint.pk]),
        reverse("webhook_log", args=[endpoint.pk]),
        reverse("webhook_delete", args=[endpoint.pk]),
    ]
    posts = [
        reverse("webhook_detail", args=[endpoint.pk]),
        reverse("webhook_rotate", args=[endpoint.pk]),
        reverse("webhook_test", args=[endpoint.pk]),
        reverse("webhook_enable", args=[endpoint.pk]),
        reverse("webhook_disable", args=[endpoint.pk]),
        reverse("webhook_delete", args=[endpoint.pk]),
        reverse("webhook_redeliver", args=[endpoint.pk, delivery.pk]),
    ]
    for user in (bob, fiona):
        client = client_as(user)
        for url in gets:
            assert client.get(url).status_code == 403, (user, url)
        for url in posts:
            assert client.post(url, body()).status_code == 403, (user, url)
    outsider = client_as(charlie)
    for url in gets[2:]:
        assert outsider.get(url).status_code == 404, url
    for url in posts:
        assert outsider.post(url, body()).status_code == 404, url
    assert "127.0.0.1:9/h" not in outsider.get(reverse("webhook_list")).content.decode()
    endpoint.refresh_from_db()
    assert endpoint.enabled and WebhookEndpoint.objects.count() == 1


def test_edit_rotate_disable_enable_delete(alice, client_as, org_a: Organization) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice)
    endpoint = _endpoint(org_a)
    detail = reverse("webhook_detail", args=[endpoint.pk])
    bad = client.post(detail, body(url="gopher://x"))
    assert bad.status_code == 400 and "Only http://" in bad.content.decode()
    assert client.post(detail, body(url="http://127.0.0.1:9/new")).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.url == "http://127.0.0.1:9/new"

    last4 = endpoint.secret_last4
    rotate = reverse("webhook_rotate", args=[endpoint.pk])
    assert client.post(rotate, {"overlap_hours": "999"}).status_code == 400
    page = client.post(rotate, {"overlap_hours": "2"}).content.decode()
    assert "Secret rotated" in page and "The old secret also signs until" in page
    endpoint.refresh_from_db()
    assert endpoint.previous_secret_encrypted and endpoint.secret_last4 in page
    assert endpoint.secret_last4 != last4 or endpoint.secret_encrypted

    client.post(reverse("webhook_disable", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    client.post(reverse("webhook_enable", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.enabled

    delete = reverse("webhook_delete", args=[endpoint.pk])
    assert "cannot be undone" in client.get(delete).content.decode()
    assert WebhookEndpoint.objects.exists()  # the GET only asks
    assert client.post(delete).status_code == 302
    assert not WebhookEndpoint.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"webhook.updated", "webhook.secret_rotated", "webhook.deleted"} <= actions


def test_delivery_log_send_test_and_redeliver(alice, client_as, org_a: Organization) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice)
    with receiver() as rx:
        endpoint, _ = endpoints.create_endpoint(org_a, url=rx.url, channel=Channel.WEB)
        log = reverse("webhook_log", args=[endpoint.pk])
        assert "No deliveries yet" in client.get(log).content.decode()
        client.post(reverse("webhook_test", args=[endpoint.pk]))
        deliver_due(budget_seconds=10)
        page = client.get(log).content.decode()
        assert "webhook.test" in page and "HTTP 200" in page and "Redeliver" in page
        assert 'hx-trigger="every 3s"' in page and "data-poll-when-visible" in page
        delivery = Delivery.objects.get()
        client.post(reverse("webhook_redeliver", args=[endpoint.pk, delivery.pk]))
        deliver_due(budget_seconds=10)
        assert len(rx.received) == 2
        assert rx.received[0].json["id"] == rx.received[1].json["id"]
    assert DeliveryAttempt.objects.count() == 2
