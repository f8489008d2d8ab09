"""Lifecycle policy keys on the pool form, the raw-JSON editor and the pool page."""

from __future__ import annotations

import json

import pytest

from pools.config import ConfigError, validate_e2b_config
from pools.models import CapacityPool
from tests.capacity.pages import NEW_E2B, detail, text


def test_typed_policy_fields_are_saved(client_as, alice):  # type: ignore[no-untyped-def]
    response = client_as(alice).post(
        NEW_E2B,
        {
            "name": "thrifty",
            "idlePauseMinutes": "10",
            "idleCpuPercent": "2.5",
            "pausedTerminateDays": "7",
            "maxSessionHours": "48",
            "maxSessionAction": "pause",
        },
    )
    pool = CapacityPool.objects.get()
    assert response.status_code == 302
    assert pool.config == {
        "templateId": "base",
        "launchRunnerInline": False,
        "timeoutSeconds": 3600,
        "onTimeout": "kill",
        "idlePauseMinutes": 10,
        "idleCpuPercent": 2.5,
        "pausedTerminateDays": 7,
        "maxSessionHours": 48,
        "maxSessionAction": "pause",
    }
    page = text(client_as(alice).get(detail(pool.pk)).content)
    assert "Idle auto-pause: after 10 min under 2.5 % CPU" in page
    assert "Paused sessions: terminated after 7 days paused" in page
    assert "Maximum age: 48 h from first run, then paused" in page
    assert (
        "/billing/auto-pause-savings/?pool="
        in client_as(alice).get(detail(pool.pk)).content.decode()
    )


def test_policies_are_off_when_left_empty(client_as, alice):  # type: ignore[no-untyped-def]
    client_as(alice).post(NEW_E2B, {"name": "plain", "maxSessionAction": "terminate"})
    pool = CapacityPool.objects.get()
    assert not {"idlePauseMinutes", "maxSessionAction", "idleCpuPercent"} & set(pool.config)
    page = text(client_as(alice).get(detail(pool.pk)).content)
    assert "Idle auto-pause: off" in page and "Maximum age: none" in page


def test_out_of_range_policy_values_are_a_400_with_the_field_message(client_as, alice):  # type: ignore[no-untyped-def]
    client = client_as(alice)
    typed = client.post(
        NEW_E2B,
        {
            "name": "t",
            "idlePauseMinutes": "0",
            "idleCpuPercent": "150",
            "pausedTerminateDays": "400",
            "maxSessionHours": "721",
        },
    )
    assert typed.status_code == 400
    body = text(typed.content)
    assert "must be between 1 and 1440 minutes." in body
    assert "must be between 0.1 and 100 (CPU %)." in body
    assert "must be between 1 and 365 days." in body
    assert "must be between 1 and 720 hours." in body
    raw = client.post(
        NEW_E2B,
        {
            "name": "r",
            "raw_config": json.dumps({"idlePauseMinutes": 2000, "maxSessionAction": "x"}),
        },
    )
    assert raw.status_code == 400
    body = text(raw.content)
    assert "idlePauseMinutes: must be between 1 and 1440 minutes." in body
    assert 'maxSessionAction: must be "terminate" or "pause".' in body
    assert CapacityPool.objects.count() == 0


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"idlePauseMinutes": True}, "idlePauseMinutes"),
        ({"idlePauseMinutes": "10"}, "idlePauseMinutes"),
        ({"idleCpuPercent": 0.05}, "idleCpuPercent"),
        ({"pausedTerminateDays": 0}, "pausedTerminateDays"),
        ({"maxSessionHours": 1.5}, "maxSessionHours"),
    ],
)
def test_config_model_refuses_bad_policy_values(config, key):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        validate_e2b_config(config)
    assert list(caught.value.errors) == [key]


def test_raw_json_accepts_the_policy_keys(client_as, alice):  # type: ignore[no-untyped-def]
    raw = {"templateId": "abc", "idlePauseMinutes": 5, "idleCpuPercent": 1}
    # Typed fields as the form showed them (the policy ones empty) do not matter.
    shown = {"templateId": "base", "timeoutSeconds": "3600", "onTimeout": "kill"}
    response = client_as(alice).post(
        NEW_E2B,
        {"name": "raw", **shown, "maxSessionAction": "terminate", "raw_config": json.dumps(raw)},
    )
    assert response.status_code == 302
    config = CapacityPool.objects.get().config
    assert (config["idlePauseMinutes"], config["idleCpuPercent"]) == (5, 1.0)
