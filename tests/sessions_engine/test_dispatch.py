"""Dispatch: the first eligible pool wins, every other pool says why it was skipped."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pools.providers.fake import FakeCloud
from rensei.models import Organization
from sessions import jobs, services
from sessions.dispatch import dispatch_waiting
from sessions.models import Session, SessionState
from tests.sessions_engine.conftest import make_pool

S = SessionState
pytestmark = pytest.mark.django_db


def test_routing_explains_each_skipped_pool(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    make_pool(org_a, "off", order=1, enabled=False)
    make_pool(org_a, "plain", order=2)
    full = make_pool(org_a, "full", order=3, concurrency_cap=1, runtime_provides=["toolchain:go"])
    chosen = make_pool(org_a, "go", order=4, runtime_provides=["toolchain:go"])
    # Fill "full" with one running session.
    filler = new_session(runtime_kinds=["toolchain:go"], pool_name="full")
    assert filler.pool == full

    session = new_session(runtime_kinds=["npm", "toolchain:go"])
    assert session.state == S.PROVISIONING
    assert session.pool == chosen
    assert session.routing["chosen"] == "go"
    assert session.routing["skipped"] == [
        {"pool": "off", "reason": "disabled"},
        {"pool": "plain", "reason": "missing toolchain:go"},
        {"pool": "full", "reason": "at its cap (1/1)"},
    ]


def test_no_eligible_pool_fails_with_the_reasons(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    make_pool(org_a, "off", order=1, enabled=False)
    make_pool(org_a, "plain", order=2)
    session = new_session(runtime_kinds=["toolchain:rust"])
    assert session.state == S.FAILED
    assert session.last_error == (
        "No pool can run this session (off: disabled; plain: missing toolchain:rust)."
    )
    assert session.ended_at is not None


def test_org_without_pools_says_where_to_add_one(
    org_a: Organization, new_session: Callable[..., Session]
) -> None:
    session = new_session()
    assert session.state == S.FAILED
    assert "no capacity pools" in session.last_error


def test_named_pool_is_the_only_candidate(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    make_pool(org_a, "first", order=1)
    second = make_pool(org_a, "second", order=2)
    session = new_session(pool_name="second")
    assert session.pool == second
    assert session.routing == {"skipped": [], "requested": "second", "chosen": "second"}


def test_cap_makes_sessions_wait_and_a_freed_slot_starts_them(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    pool = make_pool(org_a, "capped", concurrency_cap=2)
    first, second = new_session(), new_session()
    for s in (first, second):
        jobs.provision(s.pk)
    third = new_session()
    assert third.state == S.QUEUED
    assert third.pool is None
    assert third.routing["waiting_for"] == ["capped"]
    assert third.routing["skipped"] == [{"pool": "capped", "reason": "at its cap (2/2)"}]
    # Nothing frees: a retry leaves it waiting.
    assert dispatch_waiting(pool) == 0

    # A paused session does not hold a slot (E2B does not count paused sandboxes).
    first.refresh_from_db()
    assert services.request_pause(first)
    jobs.pause(first.pk)  # frees the slot and dispatches the waiting session
    third.refresh_from_db()
    assert third.state == S.PROVISIONING
    assert third.pool == pool


def test_terminating_a_session_starts_the_waiting_one(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    pool = make_pool(org_a, "capped", concurrency_cap=1)
    first = new_session()
    jobs.provision(first.pk)
    waiting = new_session()
    assert waiting.state == S.QUEUED
    first.refresh_from_db()
    assert services.request_terminate(first)
    jobs.terminate(first.pk)
    waiting.refresh_from_db()
    assert waiting.state == S.PROVISIONING and waiting.pool == pool
    jobs.provision(waiting.pk)
    waiting.refresh_from_db()
    assert waiting.state == S.RUNNING


def test_waiting_session_can_be_terminated_without_a_sandbox(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    make_pool(org_a, "capped", concurrency_cap=0)
    session = new_session()
    assert session.state == S.QUEUED
    assert services.request_terminate(session)
    jobs.terminate(session.pk)
    session.refresh_from_db()
    assert session.state == S.TERMINATED
    assert cloud.calls == []  # no pool, no sandbox: nothing to ask the provider


def test_a_failed_provision_frees_its_slot_for_a_waiting_session(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    from pools.providers.base import ProviderError

    pool = make_pool(org_a, "capped", concurrency_cap=1)
    doomed = new_session()
    waiting = new_session()
    assert waiting.state == S.QUEUED
    cloud.fail_next("provision", ProviderError("E2B rejected this key (401).", permanent=True))
    jobs.provision(doomed.pk)
    doomed.refresh_from_db()
    waiting.refresh_from_db()
    assert doomed.state == S.FAILED
    assert waiting.state == S.PROVISIONING and waiting.pool == pool
