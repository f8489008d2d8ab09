"""Bounded provider calls: a stalled E2B (the emulator's added latency) gets "E2B did not
answer within N s" from Test connection and the management commands, within their bound,
instead of a late success or a hung terminal. The latency is far longer than any test run,
so a call that was not cut could not pass."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from pools.models import HealthStatus, PoolHealthCheck
from rensei.credentials import set_credential
from rensei.models import AuditEvent, Channel, Credential

STALL_MS = 600_000  # ten minutes: no test waits that long
TEST_URL = "/settings/integrations/e2b/test/"


@pytest.fixture
def stalled(e2b_settings):  # type: ignore[no-untyped-def]
    """The emulator; the test stalls the endpoint it needs (the stalled request is cancelled
    when the emulator stops, after its 3 s grace)."""
    return e2b_settings.emulator


def test_test_connection_says_e2b_did_not_answer_within_the_web_bound(  # type: ignore[no-untyped-def]
    stalled, settings, client_as, alice, org_a
):
    settings.RENSEI_WEB_PROVIDER_TIMEOUT = 1
    set_credential(org_a, "e2b", "e2b_key_for_a_stalled_e2b", alice, Channel.WEB)
    stalled.set_latency(STALL_MS, "list")
    body = client_as(alice).htmx("post", TEST_URL).content.decode()
    assert "E2B did not answer within 1 s." in body
    assert "Connection OK" not in body
    assert AuditEvent.objects.get(action="credential.tested").detail["result"] == "failed"
    assert Credential.objects.get(org=org_a).last_test_ok is False
    assert len(stalled.calls_to("list")) <= 1  # one try, given up: no retries behind it


def test_the_web_bound_defaults_to_five_seconds() -> None:
    assert django_settings.RENSEI_WEB_PROVIDER_TIMEOUT == 5


def test_check_pool_gives_up_at_its_timeout(stalled, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "donmai-worker"})
    stalled.set_latency(STALL_MS, "create")
    out = StringIO()
    with pytest.raises(CommandError, match="failing its health check"):
        call_command("check_pool", str(pool.pk), "--timeout", "0.5", stdout=out)
    assert "E2B did not answer within 0.5 s." in out.getvalue()
    check = PoolHealthCheck.objects.get(pool=pool)
    assert check.status == HealthStatus.FAILING


def test_reconcile_gives_up_at_its_timeout_and_says_why(stalled, make_pool, org_a):  # type: ignore[no-untyped-def]
    make_pool(org_a)
    stalled.set_latency(STALL_MS, "list")
    out = StringIO()
    call_command("reconcile", "--org", org_a.slug, "--timeout", "0.5", stdout=out)
    assert "errors 1" in out.getvalue()
    assert "e2b: E2B did not answer within 0.5 s." in out.getvalue()
    failed = AuditEvent.objects.get(action="reconcile.failed")
    assert failed.detail["reason"] == "E2B did not answer within 0.5 s."


@pytest.mark.parametrize("value", ["0", "-1", "soon", "86400"])
def test_timeout_option_refuses_nonsense(value, org_a):  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="timeout"):
        call_command("reconcile", "--timeout", value)
