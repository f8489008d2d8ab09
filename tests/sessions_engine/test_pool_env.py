"""A pool's env values, encrypted at rest, reach the sandbox in clear at provision time."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection

from pools.providers.fake import FakeCloud
from rensei.models import Organization
from sessions import jobs
from sessions.models import Session, SessionState
from tests.sessions_engine.conftest import make_pool


@pytest.mark.django_db
def test_the_sandbox_gets_the_pool_env_in_clear(
    org_a: Organization, cloud: FakeCloud, rate_cards: None, new_session: Callable[..., Session]
) -> None:
    pool = make_pool(
        org_a,
        "env-1",
        config={"templateId": "donmai-worker", "envVars": {"POOL_SECRET": "s3cr3t-pool"}},
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT config FROM pools_capacitypool WHERE id = %s", [pool.pk])
        assert "s3cr3t-pool" not in str(cursor.fetchone()[0])
    session = new_session(env={"OWN": "x"})
    jobs.provision(session.pk)
    session.refresh_from_db()
    assert session.state == SessionState.RUNNING, session.last_error
    assert cloud.sandboxes[session.sandbox_id].env == {"POOL_SECRET": "s3cr3t-pool", "OWN": "x"}
