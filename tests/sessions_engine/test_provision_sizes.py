"""A provision records its sandbox without asking E2B about it first, once the template's
sizes are known, and confirms them right after (pools.providers.e2b_sizes).

Against the emulator through the real SDK; the job is called in process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Any

import pytest

from pools.providers import e2b_sizes
from rensei.crypto import encrypt
from rensei.models import Credential, Organization
from sessions import enqueue, jobs, services
from sessions.models import RunningInterval, Session
from tests.sessions_engine.conftest import ensure_rate_cards, make_pool

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "e2b_sizes_key"


@pytest.fixture
def provisioned(
    org_a: Organization, e2b_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], Session]]:
    ensure_rate_cards()
    make_pool(org_a, "e2b-1", provider="e2b", order=1)
    Credential.objects.create(
        org=org_a, provider="e2b", secret_encrypted=encrypt(KEY), last_four="_key"
    )
    monkeypatch.setattr(enqueue, "_publish", lambda name, args: None)
    e2b_sizes.forget()

    def provision() -> Session:
        session = services.create_session(
            org_a, issue_key="ENG-7", runtime_kinds=[], requirement_kinds=[]
        )
        jobs.provision(session.pk)
        return Session.objects.get(pk=session.pk)

    yield provision
    e2b_sizes.forget()


def sandbox_start(emulator: Any, sandbox_id: str) -> Any:
    """The start E2B reports for the sandbox (as the provider reads it)."""
    from e2b import Sandbox

    opts = {"api_key": KEY, "api_url": emulator.url, "sandbox_url": emulator.url}
    started = Sandbox.get_info(sandbox_id, **opts).started_at
    return started if started.tzinfo else started.replace(tzinfo=UTC)


def test_later_provisions_confirm_the_template_sizes_after_running(
    provisioned: Callable[[], Session], e2b_settings: Any
) -> None:
    emu = e2b_settings.emulator
    first = provisioned()
    assert first.state == "running" and first.vcpu and first.memory_mb
    assert len(emu.calls_to("get")) == 1  # nothing known yet: asked before the record

    second = provisioned()
    assert second.state == "running"
    assert (second.vcpu, second.memory_mb, second.template) == (
        first.vcpu,
        first.memory_mb,
        first.template,
    )
    assert len(emu.calls_to("get")) == 2  # the confirmation, after the record
    # Billed from the sandbox's own start, as when E2B was asked first.
    interval = RunningInterval.objects.get(session=second, ended_at__isnull=True)
    assert interval.started_at == max(
        sandbox_start(e2b_settings, second.sandbox_id), second.created_at
    )


def test_sizes_e2b_contradicts_are_corrected(
    provisioned: Callable[[], Session], e2b_settings: Any
) -> None:
    first = provisioned()
    template = "donmai-worker"  # the pool's (make_pool)
    remembered = e2b_sizes.key(e2b_settings.url, KEY, template)
    assert e2b_sizes.known(remembered) is not None
    e2b_sizes.remember(remembered, "old-build", 16, 65_536)  # a template rebuilt since

    second = provisioned()
    assert (second.vcpu, second.memory_mb, second.template) == (
        first.vcpu,
        first.memory_mb,
        first.template,
    )
    # And the next one is recorded with what E2B said this time.
    third = provisioned()
    assert (third.vcpu, third.memory_mb) == (first.vcpu, first.memory_mb)


def test_a_failed_confirmation_keeps_the_estimate(
    provisioned: Callable[[], Session], e2b_settings: Any
) -> None:
    first = provisioned()
    e2b_settings.emulator.fail_next("get", count=5, status=500)
    second = provisioned()
    assert second.state == "running"
    assert (second.vcpu, second.memory_mb) == (first.vcpu, first.memory_mb)
    interval = RunningInterval.objects.get(session=second, ended_at__isnull=True)
    assert interval.started_at >= second.created_at
