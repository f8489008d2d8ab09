"""The demo org's webhook endpoint: the demo receiver ``make run`` starts.

``seed_demo`` (billing/demo.py) calls ``ensure_demo_endpoint``; the receiver
(``manage.py demo_webhook_receiver``, a Procfile process) listens on a free loopback port
and points the endpoint at it when it starts, so a fresh ``make run`` shows deliveries in
Settings → Webhooks and the receiver's lines in the terminal.
"""

from __future__ import annotations

from events import endpoints
from events.models import WebhookEndpoint
from rensei.demo import DEMO_ORG_SLUG
from rensei.models import Channel, Organization

DESCRIPTION = "Demo receiver (make run): logs what it receives"
# Until the receiver starts and says where it listens (nothing listens here).
PLACEHOLDER_URL = "http://127.0.0.1:9/demo-webhooks"


def demo_endpoints() -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(description=DESCRIPTION).select_related("org"))


def ensure_demo_endpoint(org: Organization) -> WebhookEndpoint:
    """The org's demo endpoint, made on the first run only (every event type)."""
    found = WebhookEndpoint.objects.filter(org=org, description=DESCRIPTION).first()
    if found is not None:
        return found
    endpoint, _secret = endpoints.create_endpoint(
        org, url=PLACEHOLDER_URL, description=DESCRIPTION, channel=Channel.CLI
    )
    return endpoint


def point_at(url: str) -> list[WebhookEndpoint]:
    """Point every demo endpoint at the receiver's URL (and enable it again). A demo org
    seeded before webhooks existed gets its endpoint here."""
    found = demo_endpoints()
    if not found:
        org = Organization.objects.filter(slug=DEMO_ORG_SLUG).first()
        found = [ensure_demo_endpoint(org)] if org is not None else []
    for endpoint in found:
        if endpoint.url != url or not endpoint.enabled:
            endpoints.update_endpoint(
                endpoint,
                url=url,
                event_types=endpoint.event_types,
                description=endpoint.description,
                enabled=True,
                channel=Channel.CLI,
            )
    return found
