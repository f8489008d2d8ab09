"""Pool env values are secrets at rest: encrypted in the column and in dumps, write-only in
the pool form, the raw-JSON editor and the Django admin, masked on every page."""

from __future__ import annotations

import importlib
import io
import json
import secrets

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from pools.config import ENCRYPTED_ENV_KEY, MASK, validate_e2b_config
from pools.models import CapacityPool
from tests.capacity.test_admin import form as admin_form
from tests.factories import CapacityPoolFactory

pytestmark = pytest.mark.django_db

encrypt_migration = importlib.import_module("pools.migrations.0003_encrypt_pool_env_values")


def canary() -> str:
    return f"pool-env-CANARY-{secrets.token_hex(12)}"


def raw_column(pool: CapacityPool) -> str:
    """What the database holds (what ``pg_dump`` would write)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT config FROM pools_capacitypool WHERE id = %s", [pool.pk])
        return str(cursor.fetchone()[0])


def env_pool(org, value: str, **env: str) -> CapacityPool:  # type: ignore[no-untyped-def]
    config = validate_e2b_config(
        {"templateId": "donmai-worker", "envVars": {"SECRET": value, **env}}
    )
    return CapacityPoolFactory.create(org=org, name="env-pool", config=config)


def form_data(pool: CapacityPool, **fields: str) -> dict[str, str]:
    data = {
        "name": pool.name,
        "templateId": "donmai-worker",
        "timeoutSeconds": "3600",
        "onTimeout": "kill",
        "order": str(pool.order),
        "enabled": "on",
    }
    data.update(fields)
    return data


def test_values_are_encrypted_in_the_column_and_clear_when_loaded(org_a) -> None:  # type: ignore[no-untyped-def]
    value = canary()
    pool = env_pool(org_a, value)
    stored = json.loads(raw_column(pool))
    assert value not in raw_column(pool)
    assert "envVars" not in stored and set(stored[ENCRYPTED_ENV_KEY]) == {"SECRET"}
    loaded = CapacityPool.objects.get(pk=pool.pk).config
    assert loaded["envVars"] == {"SECRET": value}
    # In clear for the job, but a log line or traceback showing the dict shows the mask.
    assert value not in repr(loaded) and MASK in repr(loaded)
    assert json.dumps(loaded["envVars"]) == json.dumps({"SECRET": value})
    # values() goes through the same field.
    assert CapacityPool.objects.values_list("config", flat=True).get()["envVars"]["SECRET"] == value


def test_dumpdata_holds_no_value_and_loaddata_restores_it(db_owner, org_a, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # As the owner: loaddata resets the id sequences, which the application's role may not.
    value = canary()
    pool = env_pool(org_a, value)
    out = io.StringIO()
    call_command("dumpdata", "pools.capacitypool", stdout=out)
    assert value not in out.getvalue()
    assert ENCRYPTED_ENV_KEY in out.getvalue()
    dump = tmp_path / "pools.json"
    dump.write_text(out.getvalue())
    CapacityPool.objects.filter(pk=pool.pk).update(name="renamed")
    call_command("loaddata", str(dump), verbosity=0)
    restored = CapacityPool.objects.get(pk=pool.pk)
    assert restored.name == "env-pool" and restored.config["envVars"] == {"SECRET": value}
    assert value not in raw_column(restored)


def test_the_data_migration_encrypts_existing_plaintext(org_a) -> None:  # type: ignore[no-untyped-def]
    value = canary()
    pool = env_pool(org_a, value)
    plain = {"templateId": "donmai-worker", "envVars": {"SECRET": value}}
    with connection.cursor() as cursor:  # a row as the plain column left it
        cursor.execute(
            "UPDATE pools_capacitypool SET config = %s WHERE id = %s", [json.dumps(plain), pool.pk]
        )
    assert value in raw_column(pool)
    encrypt_migration.encrypt_existing(apps, None)
    assert value not in raw_column(pool)
    assert CapacityPool.objects.get(pk=pool.pk).config["envVars"] == {"SECRET": value}
    encrypt_migration.decrypt_existing(apps, None)  # the way back writes them plain again
    assert json.loads(raw_column(pool))["envVars"] == {"SECRET": value}


def test_pool_pages_show_names_never_values(client_as, alice, bob, org_a) -> None:  # type: ignore[no-untyped-def]
    value = canary()
    pool = env_pool(org_a, value)
    for user in (alice, bob):
        for url in (reverse("pool_detail", args=[pool.pk]), reverse("capacity")):
            body = client_as(user).get(url).content.decode()
            assert value not in body and value[-6:] not in body
    page = client_as(alice).get(reverse("pool_detail", args=[pool.pk])).content.decode()
    assert f"&quot;SECRET&quot;: &quot;{MASK}&quot;" in page or f'"SECRET": "{MASK}"' in page
    assert "a line with just the NAME keeps its stored value" in page


def test_the_form_keeps_replaces_and_removes_values(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    value, other = canary(), canary()
    pool = env_pool(org_a, value, OTHER=other)
    url = reverse("pool_detail", args=[pool.pk])
    web = client_as(alice)
    # As the page offers it (the names alone): every value kept.
    initial = web.get(url).content.decode()
    assert ">OTHER\nSECRET</textarea>" in initial or ">\nOTHER\nSECRET</textarea>" in initial
    assert web.post(url, form_data(pool, envVars="SECRET\nOTHER")).status_code == 302
    assert CapacityPool.objects.get(pk=pool.pk).config["envVars"] == {
        "SECRET": value,
        "OTHER": other,
    }
    # A new value replaces, a name left out is removed, a new name is added.
    replaced = canary()
    web.post(url, form_data(pool, envVars=f"SECRET={replaced}\nNEW=1"))
    assert CapacityPool.objects.get(pk=pool.pk).config["envVars"] == {
        "SECRET": replaced,
        "NEW": "1",
    }
    # A bare name with nothing stored is an error, not an empty value.
    refused = web.post(url, form_data(pool, envVars="SECRET\nGHOST"))
    assert refused.status_code == 400
    assert "no stored value to keep" in refused.content.decode()
    assert replaced not in refused.content.decode()


def test_the_raw_json_editor_keeps_masked_values(client_as, alice, org_a) -> None:  # type: ignore[no-untyped-def]
    value = canary()
    pool = env_pool(org_a, value)
    url = reverse("pool_detail", args=[pool.pk])
    web = client_as(alice)
    raw = {"templateId": "donmai-worker", "envVars": {"SECRET": MASK, "ADDED": "x"}}
    # The typed field as the page left it (the names), the raw JSON with the masked value.
    posted = form_data(pool, envVars="SECRET", raw_config=json.dumps(raw))
    assert web.post(url, posted).status_code == 302
    assert CapacityPool.objects.get(pk=pool.pk).config["envVars"] == {"SECRET": value, "ADDED": "x"}
    ghost = {"templateId": "donmai-worker", "envVars": {"GHOST": MASK}}
    refused = web.post(url, form_data(pool, envVars="SECRET\nADDED", raw_config=json.dumps(ghost)))
    assert refused.status_code == 400
    assert "GHOST: no stored value to keep" in refused.content.decode()
    assert CapacityPool.objects.get(pk=pool.pk).config["envVars"] == {"SECRET": value, "ADDED": "x"}


def test_the_admin_masks_values_and_keeps_them(client_as, org_a) -> None:  # type: ignore[no-untyped-def]
    value = canary()
    pool = env_pool(org_a, value)
    staff = client_as(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    change = f"/admin/pools/capacitypool/{pool.pk}/change/"
    page = staff.get(change).content.decode()
    assert value not in page and MASK in page
    config = {"templateId": "donmai-worker", "envVars": {"SECRET": MASK}}
    data = admin_form(org_a.pk, config, name=pool.name)
    assert staff.post(change, data).status_code == 302
    assert CapacityPool.objects.get(pk=pool.pk).config["envVars"] == {"SECRET": value}
    new = canary()
    staff.post(change, admin_form(org_a.pk, {"envVars": {"SECRET": new}}, name=pool.name))
    assert CapacityPool.objects.get(pk=pool.pk).config["envVars"] == {"SECRET": new}
    refused = staff.post(change, admin_form(org_a.pk, {"envVars": {"X": MASK}}, name=pool.name))
    assert refused.status_code == 200 and "X: no stored value to keep" in refused.content.decode()
