"""The one E2B config schema, and fuzzing of every way a config gets in (form and raw JSON)."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pools.config import KEYS, validate_e2b_config
from pools.forms import E2BPoolForm, parse_env_lines
from pools.models import CapacityPool
from pools.providers import provider_class
from pools.providers.base import ConfigError

NEW_URL = "/settings/execution/capacity/new/e2b/"
FUZZ = settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def errors_of(raw: Any) -> dict[str, list[str]]:
    with pytest.raises(ConfigError) as err:
        validate_e2b_config(raw)
    return err.value.errors


# -- the schema --------------------------------------------------------------------------


def test_defaults_fill_in() -> None:
    assert validate_e2b_config({}) == {
        "templateId": "base",
        "launchRunnerInline": False,
        "timeoutSeconds": 3600,
        "onTimeout": "kill",
    }


def test_full_config_round_trips() -> None:
    config = {
        "templateId": "abc123def456",
        "launchRunnerInline": True,
        "timeoutSeconds": 86400,
        "onTimeout": "pause",
        "snapshotId": "snap-1",
        "envVars": {"A_1": "x", "_B": ""},
    }
    assert validate_e2b_config(config) == config
    assert provider_class("e2b").validate_config(config) == config


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"timeoutSeconds": True}, "timeoutSeconds", "whole number"),
        ({"timeoutSeconds": "3600"}, "timeoutSeconds", "not a string"),
        ({"timeoutSeconds": 3600.0}, "timeoutSeconds", "not a number"),
        ({"timeoutSeconds": 0}, "timeoutSeconds", "between 1 and 86400"),
        ({"timeoutSeconds": 86401}, "timeoutSeconds", "between 1 and 86400"),
        ({"launchRunnerInline": "true"}, "launchRunnerInline", "true or false"),
        ({"launchRunnerInline": 1}, "launchRunnerInline", "true or false"),
        ({"onTimeout": "stop"}, "onTimeout", '"kill" or "pause"'),
        ({"templateId": 5}, "templateId", "must be a string"),
        ({"templateId": ""}, "templateId", "must not be empty"),
        ({"templateId": "a b"}, "templateId", "may contain only"),
        ({"snapshotId": ""}, "snapshotId", "must not be empty"),
        ({"envVars": ["A=1"]}, "envVars", "object"),
        ({"envVars": {"lower-case": "x"}}, "envVars", "not a valid variable name"),
        ({"envVars": {"1A": "x"}}, "envVars", "not a valid variable name"),
        ({"envVars": {"A": 1}}, "envVars", "A must be a string"),
        ({"templateid": "x"}, "templateid", "not a known key"),
    ],
)
def test_wrong_types_and_values_name_the_field(raw: dict[str, Any], field: str, words: str):
    errors = errors_of(raw)
    assert list(errors) == [field]
    assert words in " ".join(errors[field])


def test_not_an_object() -> None:
    raws: list[Any] = [[], "x", 1, None, True]
    for raw in raws:
        assert list(errors_of(raw)) == ["config"]


def test_null_optional_keys_are_absent() -> None:
    assert "snapshotId" not in validate_e2b_config({"snapshotId": None, "envVars": None})
    assert "envVars" not in validate_e2b_config({"envVars": {}})


def test_several_errors_at_once() -> None:
    errors = errors_of({"timeoutSeconds": "1", "onTimeout": 3, "extra": 1})
    assert set(errors) == {"timeoutSeconds", "onTimeout", "extra"}


def test_env_lines() -> None:
    assert parse_env_lines("A=1\n\n# note\nB = x=y\n") == {"A": "1", "B": " x=y"}
    for bad, words in [("A", "write NAME=value"), ("a-b=1", "not a valid"), ("A=1\nA=2", "twice")]:
        with pytest.raises(ValueError, match=words):
            parse_env_lines(bad)


# -- fuzzing: the form fields ------------------------------------------------------------

FORM_FIELDS = [name for name in E2BPoolForm.field_order if name != "raw_config"]

texts = st.text(max_size=40)
numbers = st.integers(min_value=-5, max_value=100_000).map(str)
env_lines = st.lists(
    st.tuples(
        st.sampled_from(["A", "B_2", "_X", "lower", "1BAD", "PATH", ""]),
        st.sampled_from(["=", " = ", "", "=="]),
        st.text(string.printable, max_size=10),
    ),
    max_size=4,
).map(lambda rows: "\n".join(f"{n}{s}{v}" for n, s, v in rows))
field_values = {
    "name": st.one_of(st.sampled_from(["", "pool", "  spaced  ", "x" * 101]), texts),
    "templateId": st.one_of(
        st.sampled_from(["", "base", "donmai-worker", "team/name:tag", "a b", "x" * 129]), texts
    ),
    "launchRunnerInline": st.sampled_from(["", "on", "true", "false", "0"]),
    "timeoutSeconds": st.one_of(
        st.sampled_from(["", "0", "1", "3600", "86400", "86401", "1e3", "true"]), numbers, texts
    ),
    "onTimeout": st.one_of(st.sampled_from(["", "kill", "pause", "KILL"]), texts),
    "snapshotId": st.one_of(st.sampled_from(["", "snap-1", " "]), texts),
    "envVars": st.one_of(env_lines, texts),
    "runtime_provides_text": st.one_of(
        st.sampled_from(["", "toolchain:go", "npm, git", "toolchain:", "bogus"]), texts
    ),
    "order": st.one_of(st.sampled_from(["", "0", "3", "-1", "2147483648"]), numbers, texts),
    "concurrency_cap": st.one_of(
        st.sampled_from(["", "1", "0", "-2", "100000", "100001", "99999999999999999999"]), numbers
    ),
    "enabled": st.sampled_from(["", "on"]),
    "idlePauseMinutes": st.one_of(st.sampled_from(["", "0", "1", "1440", "1441"]), numbers),
    "idleCpuPercent": st.one_of(st.sampled_from(["", "0", "0.1", "2.5", "100", "101"]), texts),
    "pausedTerminateDays": st.one_of(st.sampled_from(["", "0", "1", "365", "366"]), numbers),
    "maxSessionHours": st.one_of(st.sampled_from(["", "0", "1", "720", "721"]), numbers),
    "maxSessionAction": st.one_of(st.sampled_from(["", "terminate", "pause", "kill"]), texts),
}
valid_values = {
    "name": st.sampled_from(["pool", "Second pool", "p-3"]),
    "templateId": st.sampled_from(["", "base", "donmai-worker", "team/name:v2"]),
    "launchRunnerInline": st.sampled_from(["", "on"]),
    "timeoutSeconds": st.one_of(st.just(""), st.integers(1, 86400).map(str)),
    "onTimeout": st.sampled_from(["", "kill", "pause"]),
    "snapshotId": st.sampled_from(["", "snap-1"]),
    "envVars": st.sampled_from(["", "A=1", "A=1\nB_2=two=2\n# comment"]),
    "runtime_provides_text": st.sampled_from(["", "toolchain:go", "npm, toolchain:node git"]),
    "order": st.sampled_from(["", "0", "7"]),
    "concurrency_cap": st.sampled_from(["", "1", "25"]),
    "enabled": st.sampled_from(["", "on"]),
}
# Wild submissions (any subset of fields, any text), and valid ones with one field fuzzed:
# the second kind reaches the schema and the save path often enough to matter.
wild = st.fixed_dictionaries({}, optional=field_values)
one_field_off = st.fixed_dictionaries(valid_values).flatmap(
    lambda base: st.sampled_from(FORM_FIELDS).flatmap(
        lambda name: field_values[name].map(lambda value: {**base, name: value})
    )
)
form_data = st.one_of(wild, one_field_off, st.fixed_dictionaries(valid_values))


def check_form(form: E2BPoolForm, raw_keys: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """The properties every submission must have, valid or not."""
    valid = form.is_valid()  # never raises
    event(f"valid={valid}")
    if valid:
        # What would be saved is exactly what the schema accepts, and re-validates unchanged.
        assert validate_e2b_config(form.config) == form.config
        with transaction.atomic():
            pool = form.save()
            pool.refresh_from_db()
            assert validate_e2b_config(pool.config) == pool.config
            transaction.set_rollback(True)
        return
    assert form.errors
    for field, messages in form.errors.items():
        assert field in form.fields or field == "__all__", field
        assert all(str(message).strip() for message in messages)
        if field == "raw_config":
            names = {"config", *KEYS, *(str(k)[:60] for k in raw_keys)}
            for message in map(str, messages):
                assert any(message.startswith(f"{name}: ") for name in names), message


@pytest.mark.django_db
@FUZZ
@given(data=form_data)
def test_fuzz_form_fields(org_a, data: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    check_form(E2BPoolForm(data, org=org_a))


# -- fuzzing: the raw-JSON editor --------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
near_valid = {
    "templateId": st.one_of(st.sampled_from(["base", "donmai-worker", ""]), json_values),
    "launchRunnerInline": st.one_of(st.booleans(), json_values),
    "timeoutSeconds": st.one_of(st.integers(min_value=-10, max_value=90_000), json_values),
    "onTimeout": st.one_of(st.sampled_from(["kill", "pause"]), json_values),
    "snapshotId": st.one_of(st.sampled_from(["snap-1", None]), json_values),
    "envVars": st.one_of(
        st.dictionaries(st.sampled_from(["A", "B_1", "bad", "9X"]), st.text(max_size=5)),
        json_values,
    ),
}
raw_configs = st.one_of(
    st.fixed_dictionaries({}, optional=near_valid),
    st.fixed_dictionaries({}, optional=near_valid).flatmap(
        lambda d: st.dictionaries(st.text(max_size=12), json_values, max_size=2).map(
            lambda extra: {**extra, **d}
        )
    ),
    json_values,
)


@pytest.mark.django_db
@FUZZ
@given(raw=raw_configs, extra_fields=wild)
def test_fuzz_raw_json(org_a, raw: Any, extra_fields: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    data = {**extra_fields, "name": "raw pool", "raw_config": json.dumps(raw)}
    form = E2BPoolForm(data, org=org_a)
    check_form(form, set(raw) if isinstance(raw, dict) else set())
    if form.is_valid():
        # The JSON wins over whatever the typed fields said.
        assert form.config == validate_e2b_config(raw)


@pytest.mark.django_db
@FUZZ
@given(text=st.one_of(st.text(max_size=60), st.sampled_from(["{", "[1,", '{"a":}', "nul", "{}}"])))
def test_fuzz_raw_json_text(org_a, text: str) -> None:  # type: ignore[no-untyped-def]
    check_form(E2BPoolForm({"name": "p", "raw_config": text}, org=org_a))


def test_deeply_nested_json_is_a_clear_error(org_a) -> None:  # type: ignore[no-untyped-def]
    form = E2BPoolForm({"name": "p", "raw_config": "[" * 100_000}, org=org_a)
    assert not form.is_valid()
    assert str(form.errors["raw_config"][0]).startswith("config: ")


# -- the same through HTTP (fewer examples: each is a full request) ------------------------

HTTP = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.django_db
@HTTP
@given(data=form_data, raw=st.one_of(st.none(), raw_configs), htmx=st.booleans())
def test_fuzz_http_posts(client_as, alice, data, raw, htmx) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice)
    if raw is not None:
        data = {**data, "raw_config": json.dumps(raw)}
    with transaction.atomic():
        before = CapacityPool.objects.count()
        extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        response = client.post(NEW_URL, data, **extra)
        assert response.status_code in (200, 302, 400), response.status_code
        created = CapacityPool.objects.count() - before
        saved = response.status_code == 302 or "HX-Redirect" in response
        assert created == (1 if saved else 0)
        for pool in CapacityPool.objects.all():
            assert validate_e2b_config(pool.config) == pool.config
        if not saved:
            assert response.status_code == (200 if htmx else 400)
            assert b"The pool was not saved" in response.content
        transaction.set_rollback(True)
