"""The pool form has one source of truth: a typed field that disagrees with the raw JSON is an
error naming both values, and env values are masked as dots, not as escape sequences."""

from __future__ import annotations

import json

import pytest

from pools.models import CapacityPool
from tests.capacity.pages import NEW_E2B, detail, element, text

pytestmark = pytest.mark.django_db


def test_a_changed_field_that_disagrees_with_the_json_is_an_error(client_as, alice):  # type: ignore[no-untyped-def]
    response = client_as(alice).post(
        NEW_E2B,
        {
            "name": "p",
            "templateId": "from-field",
            "timeoutSeconds": "3600",
            "onTimeout": "kill",
            "raw_config": json.dumps({"templateId": "from-json"}),
        },
    )
    assert response.status_code == 400
    body = text(response.content)
    assert 'The raw JSON config says "from-json" but this field says "from-field"' in body
    assert 'templateId: the raw JSON says "from-json" but the Template ID field says' in body
    assert not CapacityPool.objects.exists()


def test_a_changed_field_the_json_leaves_out_is_an_error_too(client_as, alice):  # type: ignore[no-untyped-def]
    response = client_as(alice).post(
        NEW_E2B,
        {"name": "p", "timeoutSeconds": "60", "raw_config": json.dumps({"templateId": "t1"})},
    )
    assert response.status_code == 400
    assert "The raw JSON config says 3600 but this field says 60" in text(response.content)


def test_env_conflicts_name_variables_not_values(client_as, alice):  # type: ignore[no-untyped-def]
    response = client_as(alice).post(
        NEW_E2B,
        {
            "name": "p",
            "envVars": "FROM_FIELD=secret-ish",
            "raw_config": json.dumps({"envVars": {"FROM_JSON": "other"}}),
        },
    )
    body = text(response.content)
    assert response.status_code == 400
    assert "says variables FROM_JSON but this field says variables FROM_FIELD" in body
    errors = response.context["form"].errors.as_data()
    assert not any("secret-ish" in str(e) or "other" in str(e) for e in errors["envVars"])


def test_fields_that_agree_or_were_left_alone_save_the_json(client_as, alice):  # type: ignore[no-untyped-def]
    client = client_as(alice)
    agreed = client.post(
        NEW_E2B,
        {
            "name": "same",
            "templateId": "t1",
            "timeoutSeconds": "3600",
            "onTimeout": "kill",
            "raw_config": json.dumps({"templateId": "t1"}),
        },
    )
    assert agreed.status_code == 302
    untouched = client.post(
        NEW_E2B,
        {
            "name": "json only",
            "templateId": "base",
            "timeoutSeconds": "3600",
            "onTimeout": "kill",
            "raw_config": json.dumps({"templateId": "t2", "onTimeout": "pause"}),
        },
    )
    assert untouched.status_code == 302
    saved = CapacityPool.objects.get(name="json only").config
    assert saved["templateId"] == "t2" and saved["onTimeout"] == "pause"


def test_editing_compares_with_the_pool_as_it_was(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "old", "envVars": {"K": "v"}})
    form = {
        "name": "main",
        "templateId": "old",
        "timeoutSeconds": "3600",
        "onTimeout": "kill",
        "envVars": "K",  # as the page shows it: the name, the value kept
        "enabled": "on",
    }
    client = client_as(alice)
    ok = client.post(detail(pool.pk), {**form, "raw_config": json.dumps({"templateId": "new"})})
    assert ok.status_code == 302
    pool.refresh_from_db()
    assert pool.config["templateId"] == "new" and "envVars" not in pool.config
    clash = client.post(
        detail(pool.pk),
        {
            **form,
            "envVars": "",  # the pool has none left
            "templateId": "typed",
            "raw_config": json.dumps({"templateId": "json"}),
        },
    )
    assert clash.status_code == 400
    assert 'says "json" but this field says "typed"' in text(clash.content)


def test_env_values_show_as_dots_on_the_config_view(client_as, bob, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "t", "envVars": {"TOKEN": "hunter2"}})
    page = client_as(bob).get(detail(pool.pk)).content.decode()
    shown = text(element(page, "pool-config"))
    assert '"TOKEN": "••••"' in shown
    assert "\\u2022" not in shown and "hunter2" not in page
