"""Inside the box with a real sandbox: the session page's partials through the real SDK
against the emulator (a box of the donmai template, its runner printing a heartbeat)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.template.defaultfilters import floatformat

from pools.config import validate_e2b_config
from pools.providers import for_pool
from pools.providers.base import SandboxSpec
from sessions import cpu_samples
from sessions.models import Session, SessionState
from tests.emulator.helpers import wait_for
from tests.factories import CapacityPoolFactory
from tests.sessions_web.conftest import make_session
from tests.sessions_web.helpers import text

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_box(e2b_settings, org_a) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    config = validate_e2b_config({"templateId": "donmai-worker"})
    pool = CapacityPoolFactory.create(org=org_a, provider="e2b", config=config)
    provider = for_pool(pool, timeout=10)
    spec = SandboxSpec(session_id="1", request_id=str(uuid.uuid4()), org_slug=org_a.slug)
    handle = provider.provision(config, spec)
    session = make_session(org_a, SessionState.RUNNING, pool=pool, sandbox_id=handle.sandbox_id)
    yield session
    provider.terminate(handle)


def test_charts_log_and_files_of_a_real_sandbox(client_as, alice, live_box) -> None:  # type: ignore[no-untyped-def]
    s = live_box
    client = client_as(alice)

    def sampled() -> bool:
        return "Latest " in client.get(f"/sessions/{s.pk}/metrics/").content.decode()

    assert wait_for(sampled, timeout=20, interval=0.5), "no metrics sample within 20 s"
    s.refresh_from_db()
    assert s.last_cpu_pct is not None

    provider = for_pool(s.pool, timeout=10)

    def heartbeats() -> bool:
        # Appended on every try: the emulator's stand-in runner may restart and truncate it.
        provider.exec_command(s.sandbox_id, "echo e2e-marker >> /tmp/donmai-runner.log")
        return "e2e-marker" in text(client.get(f"/sessions/{s.pk}/log/"))

    assert wait_for(heartbeats, timeout=20, interval=0.5), (
        "the runner's log never showed the marker"
    )

    listing = client.get(f"/sessions/{s.pk}/files/")
    assert listing.status_code == 200 and "/home/user" in text(listing)
    missing = client.get(f"/sessions/{s.pk}/files/", {"path": "nope", "view": "file"})
    assert "No such file or directory: /home/user/nope" in text(missing)


def test_the_minute_job_fills_the_lists_cpu_column(client_as, alice, live_box) -> None:  # type: ignore[no-untyped-def]
    s = live_box
    client = client_as(alice)
    assert 'cell-cpu"><span class="text-muted">—' in client.get("/sessions/").content.decode()
    # The emulator samples every few seconds; until its first sample the job stores nothing.
    assert wait_for(lambda: cpu_samples.sample_running() == 1, timeout=20, interval=0.5)
    s.refresh_from_db()
    assert s.last_cpu_pct is not None
    row = client.get("/sessions/").content.decode()
    assert 'cell-cpu"><span title="at ' in row and f"{floatformat(s.last_cpu_pct, 1)} %" in row
