"""Pool health checks: provision from the pool's config, `which donmai`, terminate, record."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pools.models import CapacityPool, HealthStatus, PoolHealthCheck
from pools.providers.base import ProviderError
from pools.tasks import check_pool, start_check
from rensei.models import AuditEvent
from tests.capacity.pages import CAPACITY, detail, text
from tests.factories import CapacityPoolFactory
from tests.worker import WorkerProcess


def run_check(pool: CapacityPool) -> PoolHealthCheck:
    check = start_check(pool)
    check_pool(check.pk)
    return PoolHealthCheck.objects.get(pk=check.pk)


def test_base_template_fails_saying_donmai_is_missing(e2b_settings, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "base", "onTimeout": "pause"})
    check = run_check(pool)

    assert check.status == HealthStatus.FAILING
    assert check.output.startswith("donmai not found in template base")
    assert set(check.timings) == {"provision_ms", "exec_ms", "terminate_ms"}
    assert check.finished_at and check.duration_ms is not None and check.sandbox_id
    # No sandbox left behind, and the check's sandbox was made to die on its own.
    assert e2b_settings.emulator.sandbox_ids() == []
    create = e2b_settings.emulator.calls_to("create")[-1]
    assert create.body["autoPause"] is False and create.body["timeout"] <= 300
    assert create.body["metadata"]["rensei_session"] == f"health-check-{check.pk}"
    assert create.body["metadata"]["rensei_org"] == "org-a"
    assert create.body["metadata"]["rensei_request"]

    pool.refresh_from_db()
    assert pool.health_status == HealthStatus.FAILING
    assert pool.health_output == check.output and pool.health_checked_at == check.finished_at
    event = AuditEvent.objects.get(action="pool.checked")
    assert event.detail["result"] == "failing" and event.channel == "web"


def test_donmai_worker_template_passes(e2b_settings, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "donmai-worker", "launchRunnerInline": True})
    check = run_check(pool)
    assert check.status == HealthStatus.PASSING, check.output
    assert check.output.startswith("donmai found at ")
    assert "in template donmai-worker" in check.output
    assert e2b_settings.emulator.sandbox_ids() == []
    pool.refresh_from_db()
    assert pool.health_status == HealthStatus.PASSING


def test_unknown_template_fails_with_e2b_reason(e2b_settings, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, config={"templateId": "ghost"})
    check = run_check(pool)
    assert check.status == HealthStatus.FAILING
    assert "Template 'ghost' not found in E2B" in check.output
    assert e2b_settings.emulator.sandbox_ids() == []


def test_no_credential_fails_with_where_to_add_one(settings, make_pool, org_a):  # type: ignore[no-untyped-def]
    settings.E2B_API_KEY = ""
    check = run_check(make_pool(org_a))
    assert check.status == HealthStatus.FAILING
    assert "No E2B credential" in check.output and "Settings → Integrations" in check.output


def test_running_the_job_twice_checks_once(e2b_settings, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a)
    check = start_check(pool)
    assert check_pool(check.pk) == "passing"
    assert check_pool(check.pk) is None
    assert len(e2b_settings.emulator.calls_to("create")) == 1
    assert AuditEvent.objects.filter(action="pool.checked").count() == 1


def test_a_dead_workers_check_is_taken_over_and_its_sandbox_killed(e2b_settings, make_pool, org_a):  # type: ignore[no-untyped-def]
    from pools.providers import for_pool
    from pools.providers.base import SandboxSpec

    pool = make_pool(org_a)
    orphan = for_pool(pool).provision(
        {"templateId": "base"}, SandboxSpec(session_id="x", request_id="r-1", org_slug="org-a")
    )
    check = start_check(pool)
    PoolHealthCheck.objects.filter(pk=check.pk).update(
        run_started_at=timezone.now() - timedelta(hours=1), sandbox_id=orphan.sandbox_id
    )
    assert check_pool(check.pk) == "passing"
    assert e2b_settings.emulator.sandbox_ids() == []


def test_a_fresh_claim_is_left_alone(e2b_settings, make_pool, org_a):  # type: ignore[no-untyped-def]
    check = start_check(make_pool(org_a))
    PoolHealthCheck.objects.filter(pk=check.pk).update(run_started_at=timezone.now())
    assert check_pool(check.pk) is None
    assert e2b_settings.emulator.calls_to("create") == []


def test_fake_provider_terminate_failure_is_reported(fake_cloud, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, provider="fake", config={"templateId": "donmai-worker"})
    fake_cloud.fail_next("terminate", ProviderError("E2B answered 500", permanent=False))
    check = run_check(pool)
    assert check.status == HealthStatus.FAILING
    assert "Could not terminate sandbox" in check.output and "donmai found" in check.output


def test_fake_provider_exec_failure_still_terminates(fake_cloud, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a, provider="fake", config={"templateId": "donmai-worker"})
    fake_cloud.fail_next("exec_command", ProviderError("unreachable", permanent=False))
    check = run_check(pool)
    assert check.status == HealthStatus.FAILING
    assert "`which donmai` failed: unreachable" in check.output
    assert fake_cloud.sandboxes == {}


# -- the button and the live panel ----------------------------------------------------------


def test_check_button_enqueues_and_the_panel_polls_until_done(  # type: ignore[no-untyped-def]
    client_as, alice, e2b_settings, make_pool, org_a, django_capture_on_commit_callbacks
):
    pool = make_pool(org_a, config={"templateId": "base"})
    client = client_as(alice)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.htmx("post", f"{detail(pool.pk)}check/", {"in": "detail"})
    assert response.status_code == 200
    assert len(callbacks) == 1  # the job is sent only when the transaction commits
    assert 'hx-trigger="every 2s"' in response.content.decode()
    assert "Provisioning a sandbox" in text(response.content)
    check = PoolHealthCheck.objects.get()
    assert check.requested_by == alice
    pool.refresh_from_db()
    assert pool.health_status == HealthStatus.RUNNING

    polling = client.htmx("get", f"{detail(pool.pk)}health/?in=detail")
    assert polling.status_code == 200 and "every 2s" in polling.content.decode()
    row = client.htmx("get", f"{detail(pool.pk)}health/?in=row")
    assert row.status_code == 200 and "Checking" in text(row.content)

    check_pool(check.pk)  # what the worker does

    done = client.htmx("get", f"{detail(pool.pk)}health/?in=detail")
    assert done.status_code == 286  # htmx swaps it in and stops polling
    assert "every 2s" not in done.content.decode()
    assert "donmai not found in template base" in text(done.content)
    row = client.htmx("get", f"{detail(pool.pk)}health/?in=row")
    assert row.status_code == 286 and "Failing" in text(row.content)
    listing = text(client.get(CAPACITY).content)
    assert "Failing" in listing and "UTC" in listing
    history = text(client.get(detail(pool.pk)).content)
    assert "donmai not found in template base" in history
    assert "provision" in history and "terminate" in history


def test_check_button_in_the_table_polls_the_row(  # type: ignore[no-untyped-def]
    client_as, alice, make_pool, org_a, django_capture_on_commit_callbacks
):
    pool = make_pool(org_a, health_status=HealthStatus.PASSING)
    with django_capture_on_commit_callbacks(execute=False):
        response = client_as(alice).htmx("post", f"{detail(pool.pk)}check/", {"in": "row"})
    html = response.content.decode()
    assert f'id="pool-{pool.pk}-health"' in html
    assert 'hx-trigger="every 2s"' in html and "Checking" in text(html)


def test_check_button_without_htmx_goes_to_the_pool(client_as, alice, make_pool, org_a):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a)
    response = client_as(alice).post(f"{detail(pool.pk)}check/")
    assert response.status_code == 302 and response["Location"] == detail(pool.pk)


# -- the management command --------------------------------------------------------------


def test_command_by_name_fails_for_base(e2b_settings, make_pool, org_a, capsys):  # type: ignore[no-untyped-def]
    make_pool(org_a, "base pool", config={"templateId": "base"})
    with pytest.raises(CommandError, match="failing its health check"):
        call_command("check_pool", "base pool", "--org", "org-a")
    out = capsys.readouterr().out
    assert "donmai not found in template base" in out and "Timings: provision" in out
    assert AuditEvent.objects.get(action="pool.checked").channel == "cli"
    assert e2b_settings.emulator.sandbox_ids() == []


def test_command_by_id_passes(e2b_settings, make_pool, org_a, capsys):  # type: ignore[no-untyped-def]
    pool = make_pool(org_a)
    call_command("check_pool", str(pool.pk))
    assert "passed" in capsys.readouterr().out


def test_command_names_are_resolved_carefully(make_pool, org_a, org_b):  # type: ignore[no-untyped-def]
    make_pool(org_a, "shared")
    make_pool(org_b, "shared")
    with pytest.raises(CommandError, match="pass --org"):
        call_command("check_pool", "shared")
    with pytest.raises(CommandError, match="No pool 'nope'"):
        call_command("check_pool", "nope", "--org", "org-a")


# -- a real prefork worker provisions (the SDK must not be touched before the fork) ------


@pytest.mark.django_db(transaction=True)
def test_prefork_worker_runs_the_check(e2b_emulator, client_as, alice, org_a):  # type: ignore[no-untyped-def]
    key = str(e2b_emulator.sdk_kwargs["api_key"])
    pool = CapacityPoolFactory.create(org=org_a, name="w", config={"templateId": "donmai-worker"})
    worker = WorkerProcess(
        env={
            "E2B_API_URL": e2b_emulator.url,
            "E2B_SANDBOX_URL": e2b_emulator.url,
            "E2B_API_KEY": key,
        }
    ).start()
    try:
        for _ in range(2):  # two checks: the second runs in an already-used child
            assert client_as(alice).post(f"{detail(pool.pk)}check/").status_code == 302
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                latest = PoolHealthCheck.objects.filter(pool=pool).first()
                if latest and latest.finished:
                    break
                time.sleep(0.2)
            assert latest is not None and latest.status == HealthStatus.PASSING, (
                latest and latest.output,
                worker.log()[-3000:],
            )
    finally:
        worker.stop()
    assert PoolHealthCheck.objects.filter(status=HealthStatus.PASSING).count() == 2
    assert e2b_emulator.emulator.sandbox_ids() == []
