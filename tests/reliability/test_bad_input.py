"""Hypothesis over every form: 500 generated inputs each, never a 500, never a bad row.

Each example is validated by the form itself (cheap); every fifth also goes through HTTP
as a browser would send it, and the response must be a 2xx/3xx/4xx with nothing saved
unless the form accepted the input, and what was saved must pass the product's own rules.
Hypothesis runs derandomized, so a rerun tries the same inputs.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.forms import AuthenticationForm
from django.test import RequestFactory
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from billing.forms import CostPerIssueForm, LedgerFilterForm, read_filters
from pools.config import validate_e2b_config
from pools.forms import E2BPoolForm
from pools.kinds import parse_provides
from pools.models import CapacityPool
from rensei.credentials import resolve_credential, validate_secret
from rensei.forms import ApiTokenForm, CredentialForm
from rensei.models import ApiToken
from rensei.tokens import validate_name
from sessions.forms import ExecForm, NewSessionForm, SessionFilterForm
from sessions.models import CommandRun, Session
from sessions.services import ISSUE_KEY_RE, validate_env
from tests.reliability.figures import reproducible
from tests.reliability.routes import build_world
from tests.support import CsrfClient

EXAMPLES = 500
HTTP_EVERY = 5
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "'; DROP TABLE rensei_credential; --",
    "<script>alert(1)</script>",
    "{{ 7|add:7 }}",
    "%s%n%x",
    "../../etc/passwd",
    "🙂" * 60,
    "\u202eevil",
    "-1",
    "0",
    "1e309",
    "NaN",
    "9" * 40,
    "true",
    "null",
    "[]",
    "{}",
    "x" * 5000,
    "e2b_" + "a" * 40,
    "toolchain:go",
]
TEXT = st.one_of(st.text(max_size=120), st.sampled_from(NASTY_STRINGS), st.text(max_size=3000))
NUMBERISH = st.one_of(TEXT, st.integers(-(2**70), 2**70).map(str))


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), TEXT
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=20), inner, max_size=6)
        ),
        max_leaves=20,
    )


CONFIG_KEYS = ["templateId", "launchRunnerInline", "timeoutSeconds", "onTimeout", "snapshotId"]
RAW_JSON = st.one_of(
    TEXT,
    _json_values().map(json.dumps),
    st.dictionaries(
        st.one_of(st.sampled_from([*CONFIG_KEYS, "envVars"]), st.text(max_size=15)),
        _json_values(),
        max_size=7,
    ).map(json.dumps),
)


def fuzz(
    figure_id: str,
    figure: Callable[[str], Any],
    strategy: st.SearchStrategy[Any],
    form_check: Callable[[Any], bool],
    http_check: Callable[[Any, bool], int],
) -> None:
    """500 examples: ``form_check(data)`` → valid?; every fifth ``http_check(data, valid)``
    → the status code (which must be below 500)."""
    fig = figure(figure_id)
    seen = {"examples": 0, "accepted by the form": 0, "through HTTP": 0}
    statuses: dict[int, int] = {}

    @reproducible(EXAMPLES)
    @given(data=strategy)
    def run(data: Any) -> None:
        seen["examples"] += 1
        valid = form_check(data)
        seen["accepted by the form"] += int(valid)
        if seen["examples"] % HTTP_EVERY == 1:
            status = http_check(data, valid)
            seen["through HTTP"] += 1
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, (status, data)

    run()
    fig.add(seen["examples"])
    fig.unit = "inputs"
    fig.details = {**seen, "HTTP status codes": dict(sorted(statuses.items())), "server errors": 0}


@pytest.fixture
def world(org_a, alice, settings):  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.E2B_API_URL = settings.E2B_SANDBOX_URL = "http://127.0.0.1:9"
    return build_world(org_a, alice, "ORGA")


@pytest.fixture
def admin(world, client_as):  # type: ignore[no-untyped-def]
    return client_as(world.admin)


def test_login_form(world, figure):  # type: ignore[no-untyped-def]
    request = RequestFactory().post(reverse("login"))
    request.session = {}  # type: ignore[assignment]

    def form_check(data: dict[str, str]) -> bool:
        return AuthenticationForm(request, data=data).is_valid()

    def http_check(data: dict[str, str], valid: bool) -> int:
        browser = CsrfClient()
        response = browser.post(reverse("login"), data)
        assert "_auth_user_id" not in browser.session, "a fuzzed login logged in"
        return response.status_code

    strategy = st.fixed_dictionaries({"username": TEXT, "password": TEXT})
    fuzz("bad_input_login", figure, strategy, form_check, http_check)


def test_integration_key_form(world, admin, figure):  # type: ignore[no-untyped-def]
    def form_check(data: dict[str, str]) -> bool:
        return CredentialForm(data, provider="e2b").is_valid()

    def http_check(data: dict[str, str], valid: bool) -> int:
        before = resolve_credential(world.org).secret
        response = admin.htmx("post", reverse("integration_key", args=["e2b"]), data)
        after = resolve_credential(world.org).secret
        if not valid:
            assert after == before, "an invalid key replaced the stored one"
        else:
            assert validate_secret(after, "e2b") == after
        return response.status_code

    strategy = st.fixed_dictionaries({"secret": TEXT})
    fuzz("bad_input_integration_key", figure, strategy, form_check, http_check)


def test_token_name_form(world, admin, figure):  # type: ignore[no-untyped-def]
    def form_check(data: dict[str, str]) -> bool:
        return ApiTokenForm(data).is_valid()

    def http_check(data: dict[str, str], valid: bool) -> int:
        before = ApiToken.objects.count()
        response = admin.htmx("post", reverse("api_token_create"), data)
        added = ApiToken.objects.count() - before
        assert added == int(valid), (added, valid)
        if added:
            name = ApiToken.objects.order_by("-id").first().name  # type: ignore[union-attr]
            assert validate_name(name) == name
        return response.status_code

    fuzz(
        "bad_input_token_name",
        figure,
        st.fixed_dictionaries({"name": TEXT}),
        form_check,
        http_check,
    )


def _pool_checks(world: Any, admin: CsrfClient) -> tuple[Callable[..., bool], Callable[..., int]]:
    def form_check(data: dict[str, str]) -> bool:
        return E2BPoolForm(data, org=world.org).is_valid()

    def http_check(data: dict[str, str], valid: bool) -> int:
        before = set(CapacityPool.objects.values_list("pk", flat=True))
        response = admin.post(reverse("pool_new_kind", args=["e2b"]), data)
        added = CapacityPool.objects.exclude(pk__in=before)
        assert added.count() <= int(valid), "an input the form refused saved a pool"
        for pool in added:
            assert pool.name.strip() and validate_e2b_config(pool.config) == pool.config
            assert parse_provides(list(pool.runtime_provides)) == pool.runtime_provides
        return response.status_code

    return form_check, http_check


def test_pool_form(world, admin, figure):  # type: ignore[no-untyped-def]
    strategy = st.fixed_dictionaries(
        {
            "name": st.one_of(TEXT, st.text(string.ascii_letters, min_size=1, max_size=12)),
            "templateId": st.one_of(TEXT, st.just("donmai-worker")),
            "launchRunnerInline": st.sampled_from(["", "on", "true", "false", "x"]),
            "timeoutSeconds": st.one_of(NUMBERISH, st.integers(0, 100_000).map(str)),
            "onTimeout": st.one_of(st.sampled_from(["kill", "pause", ""]), TEXT),
            "snapshotId": TEXT,
            "envVars": st.one_of(TEXT, st.lists(TEXT, max_size=4).map("\n".join)),
            "runtime_provides_text": st.one_of(TEXT, st.just("toolchain:go toolchain:node")),
            "order": NUMBERISH,
            "concurrency_cap": NUMBERISH,
            "enabled": st.sampled_from(["", "on"]),
        }
    )
    fuzz("bad_input_pool_form", figure, strategy, *_pool_checks(world, admin))


def test_pool_raw_json(world, admin, figure):  # type: ignore[no-untyped-def]
    strategy = st.fixed_dictionaries(
        {"name": st.text(string.ascii_letters, min_size=1, max_size=12), "raw_config": RAW_JSON}
    )
    fuzz("bad_input_pool_raw_json", figure, strategy, *_pool_checks(world, admin))


def test_new_session_form(world, admin, figure):  # type: ignore[no-untyped-def]
    kinds = st.lists(
        st.one_of(st.sampled_from(["npm", "git", "python-pip", "long-running"]), TEXT),
        max_size=4,
    )

    def form_check(data: dict[str, Any]) -> bool:
        return NewSessionForm(data, org=world.org).is_valid()

    def http_check(data: dict[str, Any], valid: bool) -> int:
        before = set(Session.objects.values_list("pk", flat=True))
        response = admin.post(reverse("session_new"), data)
        added = Session.objects.exclude(pk__in=before).select_related("issue")
        assert added.count() <= int(valid), "an input the form refused saved a session"
        for session in added:
            if session.issue is not None:
                assert ISSUE_KEY_RE.fullmatch(session.issue.key)
            assert parse_provides(list(session.runtime_kinds)) == session.runtime_kinds
        return response.status_code

    strategy = st.fixed_dictionaries(
        {
            "issue_key": st.one_of(TEXT, st.just("ENG-1")),
            "issue_title": TEXT,
            "runtime_kinds": kinds,
            "requirement_kinds": kinds,
            "toolchains": st.one_of(TEXT, st.just("go, node")),
            "pool": st.one_of(NUMBERISH, st.just(str(world.pool.pk))),
        }
    )
    fuzz("bad_input_new_session", figure, strategy, form_check, http_check)


def test_exec_console_form(world, admin, figure):  # type: ignore[no-untyped-def]
    session = world.session
    url = reverse("session_exec", args=[session.pk])

    def form_check(data: dict[str, str]) -> bool:
        return ExecForm(data).is_valid()

    def http_check(data: dict[str, str], valid: bool) -> int:
        before = set(CommandRun.objects.values_list("pk", flat=True))
        response = admin.htmx("post", url, data)
        added = CommandRun.objects.exclude(pk__in=before)
        assert added.count() <= int(valid), "an input the form refused saved a command run"
        for run in added:
            assert run.command.strip() and "\x00" not in run.command
            assert 1 <= run.timeout_seconds <= 3600
            assert validate_env(dict.fromkeys(run.env_names, "")) is not None
        return response.status_code

    env_lines = st.lists(
        st.one_of(TEXT, st.tuples(TEXT, TEXT).map("=".join), st.just("GOOD_NAME=value")),
        max_size=5,
    ).map("\n".join)
    strategy = st.fixed_dictionaries(
        {
            "command": st.one_of(TEXT, st.just("echo hello")),
            "env": env_lines,
            "timeout": st.one_of(NUMBERISH, st.integers(-5, 5000).map(str)),
        }
    )
    fuzz("bad_input_exec", figure, strategy, form_check, http_check)


QUERY_KEYS = [
    "state",
    "pool",
    "issue",
    "since",
    "sort",
    "dir",
    "page",
    "range",
    "start",
    "end",
    "provider",
    "session",
    "reversals",
    "format",
    "sessions_page",
]


def test_query_strings(world, admin, figure):  # type: ignore[no-untyped-def]
    org = world.org
    pages = [
        reverse("session_list"),
        reverse("ledger"),
        reverse("cost_per_issue"),
        reverse("issue_cost", args=[world.issue.key]),
        reverse("capacity"),
        reverse("api_tokens"),
        reverse("dashboard"),
    ]
    value = st.one_of(
        TEXT,
        NUMBERISH,
        st.sampled_from(["csv", "custom", "running", "-created", "desc", "only", "2024-02-30"]),
        st.dates().map(str),
    )
    strategy = st.tuples(
        st.integers(0, len(pages) - 1),
        st.dictionaries(st.one_of(st.sampled_from(QUERY_KEYS), st.text(max_size=10)), value),
    )

    def form_check(data: tuple[int, dict[str, str]]) -> bool:
        _, query = data
        valid = True
        for form in (
            CostPerIssueForm(query, org=org),
            LedgerFilterForm(query, org=org),
        ):
            read_filters(form)
            valid = valid and form.is_valid()
        SessionFilterForm(query, org=org).valid("state")
        return valid

    def http_check(data: tuple[int, dict[str, str]], valid: bool) -> int:
        index, query = data
        response = admin.get(pages[index], query)
        htmx = admin.htmx("get", pages[index], query)
        assert htmx.status_code < 500, (htmx.status_code, pages[index], query)
        return response.status_code

    fuzz("bad_input_query_strings", figure, strategy, form_check, http_check)
