"""Django admin for sessions: staff can inspect, nobody edits state or sees env values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from pools.models import CapacityPool
from sessions import jobs, services
from sessions.models import Session, SessionState

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client_as: Callable[[Any], Any]) -> Any:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    return client_as(user)


def test_session_pages_show_state_read_only_and_no_env_values(
    pool: CapacityPool, new_session: Callable[..., Session], staff_client: Any
) -> None:
    session = new_session(env={"API_TOKEN": "sk-live-very-secret"})
    jobs.provision(session.pk)
    session.refresh_from_db()
    run = services.run_command(session, command="echo hi", env={"PASSWORD": "hunter22"})

    listing = staff_client.get("/admin/agent_sessions/session/")
    assert listing.status_code == 200
    assert session.sandbox_id in listing.content.decode()

    page = staff_client.get(f"/admin/agent_sessions/session/{session.pk}/change/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "API_TOKEN" in text
    assert "sk-live-very-secret" not in text
    assert 'name="state"' not in text  # state moves only through the state machine
    assert "running" in text

    run_page = staff_client.get(f"/admin/agent_sessions/commandrun/{run.pk}/change/")
    assert run_page.status_code == 200
    assert "PASSWORD" in run_page.content.decode()
    assert "hunter22" not in run_page.content.decode()
    assert run.env_encrypted not in run_page.content.decode()

    for url in ("/admin/agent_sessions/issue/", "/admin/agent_sessions/runninginterval/"):
        assert staff_client.get(url).status_code == 200


def test_admin_terminate_action_goes_through_the_state_machine(
    pool: CapacityPool, new_session: Callable[..., Session], staff_client: Any
) -> None:
    session = new_session()
    jobs.provision(session.pk)
    response = staff_client.post(
        "/admin/agent_sessions/session/",
        {"action": "terminate_sessions", "_selected_action": [session.pk]},
    )
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.state == SessionState.TERMINATING
    assert session.transitions.filter(to_state="terminating", note__contains="root").exists()
