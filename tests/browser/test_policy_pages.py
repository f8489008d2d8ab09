"""The pool page and the dashboard show what auto-pause saved (loaded after the page by
htmx from billing's URL: pools never import billing) and the pool's lifecycle policies."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from pools.config import validate_e2b_config
from sessions.models import PolicyAction, PolicyKind, SessionState
from tests.browser.conftest import login
from tests.factories import (
    CapacityPoolFactory,
    RateCardFactory,
    RunningIntervalFactory,
    SessionFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("RENSEI_SHOTS_DIR", "")


def snap(page: Any, name: str) -> None:
    if SHOTS:  # for a person looking at the pages; the assertions do not need it
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_savings_on_pool_page_and_dashboard(live_server, page, alice, org_a):  # type: ignore[no-untyped-def]
    RateCardFactory.create(provider="e2b")
    config = validate_e2b_config(
        {"templateId": "donmai-worker", "idlePauseMinutes": 10, "maxSessionHours": 48}
    )
    pool = CapacityPoolFactory.create(org=org_a, name="thrifty", config=config)
    session = SessionFactory.create(org=org_a, pool=pool, started=True, state=SessionState.PAUSED)
    now = timezone.now()
    paused_at = now - timedelta(hours=2)
    if paused_at.month != now.month:
        paused_at = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    RunningIntervalFactory.create(
        session=session,
        started_at=paused_at - timedelta(hours=1),
        ended_at=paused_at,
        closed_reason="pause",
    )
    PolicyAction.objects.create(
        session=session, kind=PolicyKind.IDLE_PAUSE, action="pause", reason="idle", at=paused_at
    )
    login(page, live_server.url, "alice", "pw-alice")
    saved = page.get_by_test_id("auto-pause-savings")
    expect(saved).to_contain_text("Saved by auto-pause")
    expect(saved).to_contain_text("over 1 pause")
    snap(page, "dashboard")
    page.goto(f"{live_server.url}/settings/execution/capacity/{pool.pk}/")
    expect(page.get_by_test_id("pool-policies")).to_contain_text(
        "Idle auto-pause: after 10 min under 2 % CPU"
    )
    expect(page.get_by_test_id("pool-policies")).to_contain_text("48 h from first run")
    expect(page.get_by_test_id("auto-pause-savings")).to_contain_text("in this pool")
    snap(page, "pool")
    page.goto(f"{live_server.url}/settings/execution/capacity/new/e2b/")
    expect(page.get_by_label("Idle auto-pause after (minutes)")).to_be_visible()
    snap(page, "form")
