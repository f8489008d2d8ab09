"""The session page's CPU and memory charts and the runner's log tail follow a real box
with no reload (live server, E2B emulator, the real SDK; the box is provisioned directly)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from pools.config import validate_e2b_config
from pools.providers import for_pool
from pools.providers.base import SandboxSpec
from sessions.models import Session, SessionState
from tests.browser.conftest import JOB_TIMEOUT, SCREENSHOTS, login, mark_page, same_page, shot
from tests.factories import CapacityPoolFactory, SessionFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def box_session(live_server, browser_emulator, settings, org_a) -> Iterator[tuple[Session, Any]]:  # type: ignore[no-untyped-def]
    settings.E2B_API_URL = browser_emulator.url
    settings.E2B_SANDBOX_URL = browser_emulator.url
    settings.E2B_API_KEY = str(browser_emulator.sdk_kwargs["api_key"])
    config = validate_e2b_config({"templateId": "base", "launchRunnerInline": False})
    pool = CapacityPoolFactory.create(org=org_a, provider="e2b", config=config, name="box-e2b")
    provider = for_pool(pool, timeout=10)
    spec = SandboxSpec(session_id="1", request_id=str(uuid.uuid4()), org_slug=org_a.slug)
    handle = provider.provision(config, spec)
    session = SessionFactory.create(
        org=org_a,
        pool=pool,
        state=SessionState.RUNNING,
        sandbox_id=handle.sandbox_id,
        template="base",
        vcpu=handle.vcpu,
        memory_mb=handle.memory_mb,
    )
    yield session, provider
    provider.terminate(handle)


def log_polls(page: Any, s: Session) -> None:
    """The log section asks the box again by itself. (What a poll shows is not asserted
    here: the emulator's boxes share the host's /tmp, so another box's runner may rewrite
    /tmp/donmai-runner.log at any time; the content is tested with the fake provider.)"""
    with page.expect_response(
        lambda r: r.url.endswith(f"/sessions/{s.pk}/log/") and r.status == 200,
        timeout=JOB_TIMEOUT,
    ):
        pass
    expect(page.locator("#box-log")).to_contain_text("Runner log")


def test_charts_and_log_tail_update_without_reload(box_session, page, alice, live_server) -> None:  # type: ignore[no-untyped-def]
    s, _provider = box_session
    login(page, live_server.url, "alice", "pw-alice")
    page.goto(f"{live_server.url}/sessions/{s.pk}/")
    mark_page(page)
    cpu = page.locator("#cpu-chart svg")
    expect(cpu).to_be_visible(timeout=JOB_TIMEOUT)
    latest = page.locator("#metrics-latest")
    expect(latest).to_contain_text("CPU of", timeout=JOB_TIMEOUT)
    log_polls(page, s)

    # Both follow the box: new samples and new log lines arrive by the polls alone.
    first_points = cpu.locator("polyline").get_attribute("points")
    expect(cpu.locator("polyline")).not_to_have_attribute(
        "points", first_points or "", timeout=JOB_TIMEOUT
    )
    log_polls(page, s)
    expect(page.locator("#memory-chart svg title")).to_have_text("Memory used, last 5 min (MB)")
    expect(page.locator("#box-files")).to_contain_text("/home/user")
    assert same_page(page), "the page reloaded"
    shot(page, "session-inside-the-box")
    page.locator("#box-metrics").screenshot(path=str(SCREENSHOTS / "session-metrics.png"))
