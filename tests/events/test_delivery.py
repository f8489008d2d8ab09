"""Delivery: signed POSTs to a real loopback receiver, retries, ordering, disabling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from events import endpoints
from events.delivery import deliver_due
from events.models import Delivery, DeliveryAttempt, DeliveryState, Event, WebhookEndpoint
from events.outbox import emit
from events.publish import publish
from events.signing import HEADER
from events.types import POOL_HEALTH_CHANGED, SESSION_CREATED, SESSION_RUNNING
from rensei.models import AuditEvent, Channel, Organization
from tests.events.receiver import receiver

pytestmark = pytest.mark.django_db(transaction=True)


def make(
    org: Organization, url: str, types: list[str] | None = None
) -> tuple[WebhookEndpoint, str]:
    return endpoints.create_endpoint(org, url=url, event_types=types or [], channel=Channel.WEB)


def drain() -> int:
    while publish():
        pass
    return deliver_due(budget_seconds=30)


def test_events_arrive_signed_in_order(org_a: Organization) -> None:
    with receiver() as rx:
        endpoint, secret = make(org_a, rx.url)
        for n in range(3):
            emit(org_a.pk, SESSION_CREATED if n == 0 else SESSION_RUNNING, {"n": n}, session_id=5)
        emit(org_a.pk, POOL_HEALTH_CHANGED, {"pool": "p"})
        drain()
        got = rx.events()
    assert [e["data"].get("n") for e in got if e["session_id"] == 5] == [0, 1, 2]
    assert [e["sequence"] for e in got if e["session_id"] == 5] == [1, 2, 3]
    assert all(r.signed_by(secret) for r in rx.received)
    assert not rx.received[0].signed_by("whsec_wrong")
    first = rx.received[0]
    assert first.headers["Rensei-Event-Id"] == first.json["id"]
    assert first.json["org"] == "org-a" and first.json["occurred_at"].endswith("Z")
    assert secret not in first.body.decode() and secret not in str(first.headers)
    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.DELIVERED}
    attempt = DeliveryAttempt.objects.filter(endpoint=endpoint).first()
    assert attempt is not None and attempt.status_code == 200 and attempt.response_excerpt


def test_only_chosen_types_and_only_after_the_endpoint_existed(org_a: Organization) -> None:
    emit(org_a.pk, SESSION_CREATED, {"before": True}, session_id=1)
    with receiver() as rx:
        make(org_a, rx.url, [POOL_HEALTH_CHANGED])
        emit(org_a.pk, SESSION_CREATED, {}, session_id=2)
        emit(org_a.pk, POOL_HEALTH_CHANGED, {"pool": "p"})
        drain()
        assert [e["type"] for e in rx.events()] == [POOL_HEALTH_CHANGED]


def test_other_orgs_events_never_reach_an_endpoint(
    org_a: Organization, org_b: Organization
) -> None:
    with receiver() as rx:
        make(org_a, rx.url)
        emit(org_b.pk, SESSION_CREATED, {}, session_id=9)
        drain()
        assert rx.events() == []


def test_a_failure_retries_later_and_blocks_the_sessions_next_event(org_a: Organization) -> None:
    with receiver(lambda n: 500 if n == 1 else 200) as rx:
        make(org_a, rx.url)
        emit(org_a.pk, SESSION_CREATED, {}, session_id=3)
        emit(org_a.pk, SESSION_RUNNING, {}, session_id=3)
        drain()
        # The first answered 500: it waits for its retry, and the second waits behind it.
        assert len(rx.received) == 1
        first = Delivery.objects.get(sequence=1)
        assert first.state == DeliveryState.PENDING and first.attempts == 1
        assert first.next_attempt_at > timezone.now()
        attempt = DeliveryAttempt.objects.get()
        assert attempt.status_code == 500 and attempt.next_retry_at == first.next_attempt_at
        Delivery.objects.update(next_attempt_at=timezone.now())
        drain()
        assert [e["sequence"] for e in rx.events()] == [1, 1, 2]
        assert rx.events()[0]["id"] == rx.events()[1]["id"]


def test_redirects_are_not_followed(org_a: Organization) -> None:
    with receiver(lambda n: 302) as rx:
        make(org_a, rx.url)
        emit(org_a.pk, POOL_HEALTH_CHANGED, {})
        drain()
        assert len(rx.received) == 1
    attempt = DeliveryAttempt.objects.get()
    assert attempt.status_code == 302 and "not followed" in attempt.error


@override_settings(RENSEI_WEBHOOK_RETRY_HOURS=0)
def test_after_the_retry_window_the_delivery_is_failed(org_a: Organization) -> None:
    with receiver(lambda n: 503) as rx:
        make(org_a, rx.url)
        emit(org_a.pk, POOL_HEALTH_CHANGED, {})
        drain()
    assert Delivery.objects.get().state == DeliveryState.FAILED


# One delivery thread, so "in a row" is exact (side by side, up to threads - 1 more tries
# can be in flight when the limit is reached).
@override_settings(RENSEI_WEBHOOK_DISABLE_AFTER=3, RENSEI_WEBHOOK_DELIVERY_THREADS=1)
def test_an_endpoint_failing_in_a_row_is_disabled_with_an_alert(
    org_a: Organization, alice: object
) -> None:
    alice.email = "alice@example.com"  # type: ignore[attr-defined]
    alice.save()  # type: ignore[attr-defined]
    with receiver(lambda n: 500) as rx:
        endpoint, secret = make(org_a, rx.url)
        for _ in range(4):
            emit(org_a.pk, POOL_HEALTH_CHANGED, {})
        drain()
        assert len(rx.received) == 3
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "3 failed deliveries" in endpoint.disabled_reason
    assert AuditEvent.objects.filter(action="webhook.disabled", org=org_a).exists()
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    assert secret not in mail.outbox[0].body


def test_rotation_signs_with_both_secrets_during_the_overlap(org_a: Organization) -> None:
    with receiver() as rx:
        endpoint, old = make(org_a, rx.url)
        new = endpoints.rotate_secret(
            endpoint, overlap=timedelta(hours=1), actor=None, channel=Channel.WEB
        )
        emit(org_a.pk, POOL_HEALTH_CHANGED, {})
        drain()
        endpoints.rotate_secret(endpoint, overlap=timedelta(0), actor=None, channel=Channel.WEB)
        endpoint.refresh_from_db()
        emit(org_a.pk, POOL_HEALTH_CHANGED, {})
        drain()
    during, after = rx.received
    assert during.signed_by(old) and during.signed_by(new)
    assert during.headers[HEADER].count("v1=") == 2
    assert not after.signed_by(old) and not after.signed_by(new)


def test_redeliver_and_send_test(org_a: Organization) -> None:
    with receiver() as rx:
        endpoint, _ = make(org_a, rx.url)
        emit(org_a.pk, POOL_HEALTH_CHANGED, {})
        drain()
        delivery = Delivery.objects.get()
        assert endpoints.redeliver(delivery, actor=None, channel=Channel.WEB)
        assert not endpoints.redeliver(delivery, actor=None, channel=Channel.WEB)
        endpoints.send_test(endpoint, actor=None, channel=Channel.WEB)
        drain()
        got = rx.events()
    # The redelivery and the test event have no session: they may go side by side.
    assert got[0]["type"] == POOL_HEALTH_CHANGED
    assert sorted(e["type"] for e in got[1:]) == [POOL_HEALTH_CHANGED, "webhook.test"]
    assert [e["id"] for e in got].count(got[0]["id"]) == 2
    assert Event.objects.filter(type="webhook.test").count() == 1


@override_settings(RENSEI_WEBHOOKS_ALLOW_LOOPBACK=False)
def test_delivery_checks_the_address_again(org_a: Organization) -> None:
    # Saved while loopback was allowed; refused at delivery once it is not.
    endpoint = WebhookEndpoint.objects.create(
        org=org_a, url="http://127.0.0.1:9/x", secret_encrypted=_sealed(), secret_last4="abcd"
    )
    emit(org_a.pk, POOL_HEALTH_CHANGED, {})
    drain()
    attempt = DeliveryAttempt.objects.get(endpoint=endpoint)
    assert attempt.status_code is None and "loopback" in attempt.error


def _sealed() -> str:
    from rensei import crypto

    return crypto.encrypt("whsec_test")


def test_a_secret_the_ring_cannot_decrypt_is_a_logged_failure_never_an_unsigned_post(
    org_a: Organization,
) -> None:
    with receiver(lambda n: 200) as rx:
        endpoint, _ = make(org_a, rx.url)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            secret_encrypted=Fernet(Fernet.generate_key()).encrypt(b"elsewhere").decode()
        )
        emit(org_a.pk, POOL_HEALTH_CHANGED, {})
        drain()
        assert rx.received == []
    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.PENDING and delivery.attempts == 1
    assert delivery.claimed_until is None and delivery.next_attempt_at > timezone.now()
    attempt = DeliveryAttempt.objects.get()
    assert attempt.status_code is None and "cannot be decrypted" in attempt.error
    assert WebhookEndpoint.objects.get().consecutive_failures == 1
