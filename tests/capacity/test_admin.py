"""The Django admin validates pool configs with the same schema and audits its changes."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from pools.models import CapacityPool, HealthStatus, PoolHealthCheck
from rensei.models import AuditEvent

ADD = "/admin/pools/capacitypool/add/"


@pytest.fixture
def staff(client_as, db):  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    return client_as(user)


def form(org_id: int, config: object, **extra: str) -> dict[str, str]:
    data = {
        "org": str(org_id),
        "name": "admin pool",
        "provider": "e2b",
        "config": json.dumps(config),
        "runtime_provides": "[]",
        "order": "0",
        "concurrency_cap": "",
        "enabled": "on",
        "health_checks-TOTAL_FORMS": "0",
        "health_checks-INITIAL_FORMS": "0",
    }
    data.update(extra)
    return data


def test_admin_rejects_a_bad_config(staff, org_a):  # type: ignore[no-untyped-def]
    response = staff.post(ADD, form(org_a.pk, {"timeoutSeconds": "60", "nope": 1}))
    assert response.status_code == 200
    body = response.content.decode()
    assert "timeoutSeconds: must be a whole number of seconds, not a string." in body
    assert "nope: &quot;nope&quot; is not a known key" in body
    response = staff.post(ADD, form(org_a.pk, {}, runtime_provides='["gpu"]'))
    assert "Unknown kind: gpu" in response.content.decode()
    assert not CapacityPool.objects.exists()


def test_admin_saves_the_normalised_config_and_audits(staff, org_a):  # type: ignore[no-untyped-def]
    response = staff.post(ADD, form(org_a.pk, {"templateId": "donmai-worker"}))
    assert response.status_code == 302
    pool = CapacityPool.objects.get()
    assert pool.config == {
        "templateId": "donmai-worker",
        "launchRunnerInline": False,
        "timeoutSeconds": 3600,
        "onTimeout": "kill",
    }
    event = AuditEvent.objects.get(action="pool.created")
    assert event.channel == "admin" and event.actor_label == "root"

    change = f"/admin/pools/capacitypool/{pool.pk}/change/"
    staff.post(change, form(org_a.pk, {"templateId": "base", "envVars": {"K": "secret"}}))
    changed = AuditEvent.objects.get(action="pool.changed")
    assert changed.detail["config"]["after"]["envVars"] == {"K": "••••"}
    staff.post(f"/admin/pools/capacitypool/{pool.pk}/delete/", {"post": "yes"})
    assert not CapacityPool.objects.exists()
    assert AuditEvent.objects.filter(action="pool.deleted", channel="admin").exists()


def test_health_checks_are_read_only(staff, make_pool, org_a):  # type: ignore[no-untyped-def]
    check = PoolHealthCheck.objects.create(
        pool=make_pool(org_a), status=HealthStatus.PASSING, output="donmai found"
    )
    assert staff.get("/admin/pools/poolhealthcheck/").status_code == 200
    assert staff.get("/admin/pools/poolhealthcheck/add/").status_code == 403
    view = staff.get(f"/admin/pools/poolhealthcheck/{check.pk}/change/")
    assert view.status_code == 200 and "donmai found" in view.content.decode()
    assert staff.get(f"/admin/pools/capacitypool/{check.pool_id}/change/").status_code == 200
