"""The capacity pages as an admin uses them: the pools table (order, enable, delete) and
what is audited; the new-pool and pool pages are in test_pool_pages.py."""

from __future__ import annotations

import json

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pools.models import CapacityPool, HealthStatus
from tests.capacity.helpers import audits, sessions
from tests.capacity.pages import CAPACITY, NEW, detail, table_rows, text

# -- the pools table ---------------------------------------------------------------------


def test_empty_state_offers_new_pool(client_as, alice, bob):  # type: ignore[no-untyped-def]
    page = client_as(alice).get(CAPACITY)
    assert page.status_code == 200
    body = text(page.content)
    assert "No capacity pools yet." in body
    assert f'href="{NEW}"' in page.content.decode()
    member = text(client_as(bob).get(CAPACITY).content)
    assert "No capacity pools yet." in member and "Ask an organisation admin" in member


def test_table_shows_each_pool(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    checked = timezone.now().replace(year=2026, month=3, day=4, hour=5, minute=6)
    first = make_pool(
        org_a,
        "fast",
        order=0,
        concurrency_cap=5,
        health_status=HealthStatus.PASSING,
        health_checked_at=checked,
    )
    second = make_pool(org_a, "spare", order=1, enabled=False, config={"snapshotId": "snap-9"})
    sessions(first, "running", "running", "paused", "terminated", "failed", "queued")
    sessions(second, "lost")

    page = client_as(alice).get(CAPACITY)
    rows = table_rows(page.content.decode())
    by_name = {row[1]: row for row in rows}
    assert [row[1] for row in rows] == ["fast", "spare"]
    fast = by_name["fast"]
    assert fast[2:5] == ["E2B", "donmai-worker", "Enabled"]
    assert "Passing" in fast[5] and "2026-03-04 05:06 UTC" in fast[5]
    assert fast[6:9] == ["2", "1", "5"]
    spare = by_name["spare"]
    assert spare[3:5] == ["snapshot snap-9", "Disabled"]
    assert "Not checked" in spare[5]
    assert spare[6:9] == ["0", "0", "—"]
    assert "Check pool" in fast[9] and "Enable" in spare[9]


def test_table_query_count_is_flat(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    client = client_as(alice)
    make_pool(org_a, "p0")
    client.get(CAPACITY)
    with CaptureQueriesContext(connection) as one:
        client.get(CAPACITY)
    for i in range(1, 12):
        pool = make_pool(org_a, f"p{i}", order=i)
        sessions(pool, "running", "paused")
    with CaptureQueriesContext(connection) as many:
        assert client.get(CAPACITY).status_code == 200
    assert len(many) == len(one)


def test_reorder(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    a, b, c = (make_pool(org_a, name, order=0) for name in ("a", "b", "c"))
    client = client_as(alice)
    response = client.htmx("post", f"{CAPACITY}{c.pk}/move/up/")
    assert response.status_code == 200
    assert [r[1] for r in table_rows(response.content.decode())] == ["a", "c", "b"]
    assert list(CapacityPool.objects.values_list("name", "order")) == [
        ("a", 0),
        ("c", 1),
        ("b", 2),
    ]
    response = client.post(f"{CAPACITY}{a.pk}/move/down/")
    assert response.status_code == 302
    assert [p.name for p in CapacityPool.objects.all()] == ["c", "a", "b"]
    # The top one cannot go higher: nothing changes.
    client.post(f"{CAPACITY}{c.pk}/move/up/")
    assert [p.name for p in CapacityPool.objects.all()] == ["c", "a", "b"]
    assert client.post(f"{CAPACITY}{c.pk}/move/sideways/").status_code == 404
    assert len(audits("pool.changed")) == 2
    assert b.pk


def test_enable_disable_is_audited_once(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a)
    client = client_as(alice)
    response = client.htmx("post", f"{CAPACITY}{pool.pk}/disable/")
    assert response.status_code == 200 and "Disabled" in text(response.content)
    client.htmx("post", f"{CAPACITY}{pool.pk}/disable/")  # double click
    pool.refresh_from_db()
    assert pool.enabled is False
    assert len(audits("pool.disabled")) == 1
    response = client.post(f"{CAPACITY}{pool.pk}/enable/", {"from": "detail"})
    assert response.status_code == 302 and response["Location"] == detail(pool.pk)
    pool.refresh_from_db()
    assert pool.enabled is True
    event = audits("pool.enabled")[0]
    assert (event.actor_label, event.target, event.channel) == ("alice", "main", "web")


def test_delete_unused_pool(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "t", "envVars": {"TOKEN": "s3cret"}})
    client = client_as(alice)
    confirm = client.get(f"{CAPACITY}{pool.pk}/delete/")  # without JavaScript: a confirm page
    assert confirm.status_code == 200
    assert "Delete pool main? This cannot be undone." in text(confirm.content)
    assert CapacityPool.objects.filter(pk=pool.pk).exists()
    response = client.htmx("post", f"{CAPACITY}{pool.pk}/delete/")
    assert response.status_code == 200
    assert "Pool main deleted." in text(response.content)
    assert not CapacityPool.objects.exists()
    event = audits("pool.deleted")[0]
    assert event.detail["config"]["templateId"] == "t"
    assert "s3cret" not in json.dumps(event.detail)


def test_delete_refused_with_live_sessions(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a)
    sessions(pool, "paused", "terminated")
    client = client_as(alice)
    listing = client.get(CAPACITY).content.decode()
    assert "1 live session: disable the pool instead" in listing
    response = client.htmx("post", f"{CAPACITY}{pool.pk}/delete/")
    assert response.status_code == 200
    assert "has 1 live session, so it cannot be deleted. Disable it instead" in text(
        response.content
    )
    plain = client.post(f"{CAPACITY}{pool.pk}/delete/")
    assert plain.status_code == 409
    assert client.get(f"{CAPACITY}{pool.pk}/delete/").status_code == 409
    assert CapacityPool.objects.filter(pk=pool.pk).exists()
    assert not audits("pool.deleted")


def test_delete_refused_with_history(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a)
    sessions(pool, "terminated", "failed")
    response = client_as(alice).htmx("post", f"{CAPACITY}{pool.pk}/delete/")
    assert "session history" in text(response.content)
    assert CapacityPool.objects.filter(pk=pool.pk).exists()
