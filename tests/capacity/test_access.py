"""Who may do what on every pool URL: admins manage, members read, finance nothing,
and another org's pools do not exist (404)."""

from __future__ import annotations

from typing import Any

import pytest

from pools.models import CapacityPool, PoolHealthCheck
from rensei.models import AuditEvent
from tests.capacity.pages import CAPACITY, NEW, NEW_E2B, detail


def gets(pool: CapacityPool) -> list[str]:
    return [
        CAPACITY,
        NEW,
        NEW_E2B,
        f"{NEW}template-hint/?templateId=base",
        detail(pool.pk),
        f"{detail(pool.pk)}health/",
    ]


def posts(pool: CapacityPool) -> list[tuple[str, dict[str, Any]]]:
    base = detail(pool.pk)
    return [
        (NEW_E2B, {"name": "new one"}),
        (base, {"name": "renamed"}),
        (f"{base}move/up/", {}),
        (f"{base}move/down/", {}),
        (f"{base}disable/", {}),
        (f"{base}enable/", {}),
        (f"{base}check/", {}),
        (f"{base}delete/", {}),
    ]


@pytest.fixture
def pool(make_pool, org_a):  # type: ignore[no-untyped-def]
    make_pool(org_a, "acme-other", order=1)
    return make_pool(org_a, "acme-main", order=0)


def unchanged(pool: CapacityPool) -> None:
    assert CapacityPool.objects.filter(org=pool.org).count() == 2
    fresh = CapacityPool.objects.get(pk=pool.pk)
    assert (fresh.name, fresh.order, fresh.enabled) == ("acme-main", 0, True)
    assert not PoolHealthCheck.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="pool.").exists()


def test_finance_sees_nothing(client_as, fiona, pool):  # type: ignore[no-untyped-def]
    client = client_as(fiona)
    for url in gets(pool):
        assert client.get(url).status_code == 403, url
    for url, data in posts(pool):
        assert client.post(url, data).status_code == 403, url
    unchanged(pool)


def test_member_reads_but_cannot_write(client_as, bob, pool):  # type: ignore[no-untyped-def]
    client = client_as(bob)
    for url in gets(pool):
        response = client.get(url)
        assert response.status_code in (200, 286), url
    for url, data in posts(pool):
        assert client.post(url, data).status_code == 403, url
        assert client.htmx("post", url, data).status_code == 403, url
    # The no-JavaScript delete confirmation is a write page too.
    assert client.get(f"{detail(pool.pk)}delete/").status_code == 403
    unchanged(pool)
    listing = client.get(CAPACITY).content.decode()
    assert "Check pool" not in listing and "New pool" not in listing


def test_admin_reads_everything(client_as, alice, pool):  # type: ignore[no-untyped-def]
    client = client_as(alice)
    for url in gets(pool):
        assert client.get(url).status_code in (200, 286), url


def test_other_org_gets_404(client_as, charlie, pool):  # type: ignore[no-untyped-def]
    client = client_as(charlie)
    for url in gets(pool)[4:]:
        assert client.get(url).status_code == 404, url
    for url, data in posts(pool)[1:]:
        assert client.post(url, data).status_code == 404, url
    unchanged(pool)
    # Charlie's own pages work and show none of org A's pools.
    listing = client.get(CAPACITY)
    assert listing.status_code == 200 and b"acme-" not in listing.content


def test_writes_need_csrf(client_as, alice, pool):  # type: ignore[no-untyped-def]
    client = client_as(alice)
    for url, data in posts(pool):
        assert client.post(url, data, csrf=False).status_code == 403, url
    unchanged(pool)


def test_wrong_methods(client_as, alice, pool):  # type: ignore[no-untyped-def]
    client = client_as(alice)
    for url, _ in posts(pool)[2:-1]:
        assert client.get(url).status_code == 405, url
    assert client.post(CAPACITY).status_code == 405
    assert client.get(f"{NEW}nope/").status_code == 404
