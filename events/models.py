"""The outbox (events), webhook endpoints, and each endpoint's deliveries and attempts.

An ``Event`` row is written in the transaction of the change it describes (events.outbox), so
a rolled-back change leaves none. The publisher (events.publish) later gives committed events
their feed ``position`` in one serialised pass and fans them out into ``Delivery`` rows, one
per subscribed endpoint; the delivery job (events.delivery) posts those, oldest first per
session, and logs every try as a ``DeliveryAttempt``.

Events keep the session's id as a plain number, not a foreign key: this app sits below
sessions in the layers, and an event outlives nothing it describes for more than 30 days.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from rensei.models import Organization


class Event(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=64)
    session_id = models.BigIntegerField(null=True, blank=True)
    # 1, 2, 3… per session, in the order the session's transactions wrote them.
    sequence = models.PositiveIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    data = models.JSONField(default=dict)
    # The feed's order, given by the publisher to committed events only (so a cursor never
    # skips an event whose transaction committed late); null until published.
    position = models.BigIntegerField(null=True, blank=True, unique=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session_id", "sequence"],
                condition=models.Q(session_id__isnull=False),
                name="event_unique_session_sequence",
            ),
        ]
        indexes = [
            # The feed: an org's published events after a cursor.
            models.Index(fields=["org", "position"], name="event_org_position_idx"),
            # The publisher's queue: events not yet published.
            models.Index(
                fields=["id"],
                condition=models.Q(position__isnull=True),
                name="event_unpublished_idx",
            ),
            # Retention: events older than 30 days.
            models.Index(fields=["occurred_at"], name="event_occurred_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.uid}"


class WebhookEndpoint(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    # The event types it receives; empty means every type.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # The signing secret, encrypted (rensei.crypto); shown once when made or rotated.
    secret_encrypted = models.TextField()
    secret_last4 = models.CharField(max_length=4)
    # After a rotation the old secret still signs (a second v1=) until this time.
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["org", "enabled"], name="endpoint_org_enabled_idx")]

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"<WebhookEndpoint {self.pk} {self.url} secret=••••{self.secret_last4}>"

    def receives(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One event for one endpoint: pending until a 2xx, failed after about 24 h of tries."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # Copied from the event: the job sends a session's events one at a time, in order.
    session_id = models.BigIntegerField(null=True, blank=True)
    sequence = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # A worker holds the delivery until this time; a killed worker's claim simply expires.
    claimed_until = models.DateTimeField(null=True, blank=True)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"], name="delivery_unique_endpoint_event"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state="pending"),
                name="delivery_due_idx",
            ),
            models.Index(
                fields=["endpoint", "session_id", "sequence"],
                condition=models.Q(state="pending"),
                name="delivery_pending_order_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.state})"


class DeliveryAttempt(models.Model):
    """One POST: what the receiver answered (a capped excerpt) and when the next try is."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="attempts")
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="tries")
    at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=300, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["endpoint", "-at", "-id"], name="attempt_endpoint_at_idx")]

    def __str__(self) -> str:
        return f"attempt {self.pk} ({self.status_code or self.error})"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
