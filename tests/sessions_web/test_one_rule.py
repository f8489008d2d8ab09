"""Each input rule lives once: the same bad value gets the same field and message from the
page's form, the JSON API and the service; a pool config gets the same words from the typed
form fields, the raw-JSON editor, the config model and the admin."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pools.admin import CapacityPoolAdminForm
from pools.config import validate_e2b_config
from pools.forms import E2BPoolForm
from pools.providers.base import ConfigError
from rensei.models import Organization
from sessions import services
from sessions.forms import ExecForm, NewSessionForm
from sessions.models import CommandRun, Session
from tests.sessions_web.conftest import ApiClient

pytestmark = pytest.mark.django_db

BODY: dict[str, Any] = {
    "issue": {"key": "ENG-1"},
    "runtime_kinds": ["npm"],
    "requirement_kinds": ["git"],
}
LONG_VALUE = "x" * 32_769


def api_error(resp: Any) -> tuple[str, str]:
    assert resp.status_code == 400, resp.content
    fields = resp.json()["fields"]
    assert len(fields) == 1, fields
    return next(iter(fields.items()))


def form_error(form: Any) -> tuple[str, str]:
    assert not form.is_valid()
    (field, messages), *others = form.errors.items()
    assert not others, form.errors
    return field, str(messages[0])


# --- New session: the form and POST /api/v1/sessions -------------------------------------


@pytest.mark.parametrize(
    ("form_data", "body", "api_field"),
    [
        ({"issue_key": "ENG 1"}, {"issue": {"key": "ENG 1"}}, "issue.key"),
        ({"issue_key": "E" * 65}, {"issue": {"key": "E" * 65}}, "issue.key"),
        (
            {"issue_key": "ENG-1", "issue_title": "T" * 301},
            {"issue": {"key": "ENG-1", "title": "T" * 301}},
            "issue.title",
        ),
        ({"toolchains": "toolchain:rust!"}, {"runtime_kinds": ["toolchain:rust!"]}, None),
        (
            {"toolchains": "toolchain:" + "x" * 41},
            {"runtime_kinds": ["toolchain:" + "x" * 41]},
            None,
        ),
    ],
)
def test_new_session_form_and_api_say_the_same(  # type: ignore[no-untyped-def]
    api: ApiClient, org_a: Organization, pool_a, form_data, body, api_field
) -> None:
    field, said = form_error(NewSessionForm(form_data, org=org_a))
    got_field, got = api_error(api.post("/api/v1/sessions", {**BODY, **body}))
    assert got == said
    # The form's field for the same input, under the API's (dotted) name.
    expected = api_field or "runtime_kinds"
    assert got_field == expected
    assert field == {"issue.key": "issue_key", "issue.title": "issue_title"}.get(
        expected, "toolchains"
    )
    assert not Session.objects.exists()


def test_the_service_says_it_too(org_a: Organization, pool_a) -> None:  # type: ignore[no-untyped-def]
    _, said = form_error(NewSessionForm({"issue_key": "ENG 1"}, org=org_a))
    with pytest.raises(services.SessionRequestError) as caught:
        services.create_session(
            org_a, issue_key="ENG 1", runtime_kinds=["npm"], requirement_kinds=["git"]
        )
    assert (caught.value.field, caught.value.message) == ("issue_key", said)


# --- exec: the console form, POST /api/v1/sessions/{id}/exec and the service ---------------


@pytest.mark.parametrize(
    ("form_data", "body", "api_field", "line"),
    [
        ({"command": "   "}, {"command": "   "}, "command", False),
        ({"command": "x" * 10_001}, {"command": "x" * 10_001}, "command", False),
        ({"command": "id", "timeout": "0"}, {"command": "id", "timeout": 0}, "timeout", False),
        (
            {"command": "id", "timeout": "3601"},
            {"command": "id", "timeout": 3601},
            "timeout",
            False,
        ),
        (
            {"command": "id", "env": "A-B=1"},
            {"command": "id", "env": {"A-B": "1"}},
            "env.A-B",
            True,
        ),
        (
            {"command": "id", "env": f"TOKEN={LONG_VALUE}"},
            {"command": "id", "env": {"TOKEN": LONG_VALUE}},
            "env.TOKEN",
            True,
        ),
    ],
)
def test_exec_form_api_and_service_say_the_same(  # type: ignore[no-untyped-def]
    api: ApiClient, session_factory, form_data, body, api_field, line
) -> None:
    session = session_factory()
    field, said = form_error(ExecForm({"timeout": "600", **form_data}))
    got_field, got = api_error(api.post(f"/api/v1/sessions/{session.pk}/exec", body))
    assert got_field == api_field
    assert field == api_field.split(".")[0]
    # The console takes one NAME=value per line, so its message says which line.
    assert said == (f"Line 1: {got}" if line else got)
    with pytest.raises(services.SessionRequestError) as caught:
        services.run_command(
            session,
            command=body["command"],
            env=body.get("env"),
            timeout=body.get("timeout", 600),
        )
    assert caught.value.message == got
    assert not CommandRun.objects.exists()


def test_lower_case_variable_names_are_fine_everywhere(  # type: ignore[no-untyped-def]
    api: ApiClient, session_factory
) -> None:
    session = session_factory()
    assert ExecForm({"command": "id", "timeout": "600", "env": "http_proxy=x"}).is_valid()
    resp = api.post(
        f"/api/v1/sessions/{session.pk}/exec", {"command": "id", "env": {"http_proxy": "x"}}
    )
    assert resp.status_code == 202, resp.content
    assert validate_e2b_config({"envVars": {"http_proxy": "x"}})["envVars"] == {"http_proxy": "x"}


# --- a pool config: typed fields, raw JSON, the model, the admin ---------------------------


def model_errors(raw: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(ConfigError) as caught:
        validate_e2b_config(raw)
    return caught.value.errors


def admin_errors(org: Organization, raw: dict[str, Any]) -> list[str]:
    form = CapacityPoolAdminForm(
        {
            "org": str(org.pk),
            "name": "admin pool",
            "provider": "e2b",
            "config": json.dumps(raw),
            "runtime_provides": "[]",
            "order": "0",
            "enabled": "on",
        }
    )
    assert not form.is_valid()
    return [str(m) for m in form.errors["config"]]


@pytest.mark.parametrize(
    ("typed", "raw", "key"),
    [
        ({"timeoutSeconds": "0"}, {"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"timeoutSeconds": "86401"}, {"timeoutSeconds": 86401}, "timeoutSeconds"),
        ({"templateId": "has space"}, {"templateId": "has space"}, "templateId"),
        ({"templateId": "t" * 129}, {"templateId": "t" * 129}, "templateId"),
        ({"envVars": "1A=x"}, {"envVars": {"1A": "x"}}, "envVars"),
        ({"envVars": f"TOKEN={LONG_VALUE}"}, {"envVars": {"TOKEN": LONG_VALUE}}, "envVars"),
    ],
)
def test_pool_config_says_the_same_everywhere(org_a: Organization, typed, raw, key) -> None:  # type: ignore[no-untyped-def]
    (said,) = model_errors(raw)[key]
    field, from_form = form_error(E2BPoolForm({"name": "p", **typed}, org=org_a))
    assert field == key
    # The typed env field takes NAME=value lines, so its message says which line.
    assert from_form == (f"Line 1: {said}" if key == "envVars" else said)
    raw_field, from_json = form_error(
        E2BPoolForm({"name": "p", "raw_config": json.dumps(raw)}, org=org_a)
    )
    assert (raw_field, from_json) == ("raw_config", f"{key}: {said}")
    assert admin_errors(org_a, raw) == [f"{key}: {said}"]


def test_unknown_keys_are_refused_everywhere(org_a: Organization) -> None:
    raw = {"templateId": "t1", "colour": "red"}
    (said,) = model_errors(raw)["colour"]
    assert said.startswith('"colour" is not a known key')
    _, from_json = form_error(E2BPoolForm({"name": "p", "raw_config": json.dumps(raw)}, org=org_a))
    assert from_json == f"colour: {said}"
    assert admin_errors(org_a, raw) == [f"colour: {said}"]
