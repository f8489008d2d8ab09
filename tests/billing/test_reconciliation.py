"""Reconciliation with the provider: phantom and ghost seconds, drift, settlement, the
daily job, the alert, and a stateful property test over sessions, kills behind our back,
reversals and a month close."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from billing.analytics import CostFilter, cost_per_issue
from billing.closing import close_month, month_totals
from billing.ledger import reverse_cost_event
from billing.models import CostEvent, Discrepancy, DiscrepancyKind, ReconciliationRun
from billing.periods import Period
from billing.recon_runs import reconcile_day, reconcile_yesterday
from billing.settlement import SettleRefused, settle
from pools.providers.fake import FakeSandbox, registered
from rensei.models import AuditEvent
from sessions.intervals import close_open_interval, open_interval
from sessions.models import Session, SessionState
from tests.billing.helpers import GIB_RATE, VCPU_RATE, at, ledger_sum, make_pool, make_session, run
from tests.factories import OrganizationFactory, RateCardFactory, member

K = DiscrepancyKind
DAY = date(2025, 3, 10)
QUANTUM = Decimal("1e-12")


@pytest.fixture
def cloud(db):
    RateCardFactory.create(provider="fake")
    with registered() as fake:
        yield fake


def sandbox(cloud: Any, org: Any, session: Session, started: datetime, sid: str = "") -> str:
    sandbox_id = sid or f"sb-{session.pk}"
    cloud.sandboxes[sandbox_id] = FakeSandbox(
        sandbox_id=sandbox_id,
        template="t",
        metadata={"rensei_org": org.slug, "rensei_session": str(session.pk)},
        env={},
        started_at=started,
    )
    Session.objects.filter(pk=session.pk).update(sandbox_id=sandbox_id)
    session.sandbox_id = sandbox_id
    return sandbox_id


def per_second(session: Session) -> Decimal:
    vcpu, memory_mb = session.vcpu or 0, session.memory_mb or 0
    return vcpu * VCPU_RATE + Decimal(memory_mb) / 1024 * GIB_RATE


def kinds(run_: ReconciliationRun) -> dict[tuple[str, int | None], Decimal]:
    return {(d.kind, d.session_id): d.seconds for d in run_.found.all()}


@pytest.fixture
def scene(org_a, cloud):
    """Two sessions on DAY: s1 ran 10:00-10:30, s2 runs since 11:00 (sandbox alive)."""
    make_pool(org_a, "f", provider="fake")
    s1 = make_session(org_a, provider="fake")
    s2 = make_session(org_a, provider="fake")
    row = run(s1, at("2025-03-10 10:00"), at("2025-03-10 10:30"))
    sandbox(cloud, org_a, s1, at("2025-03-10 10:00"))
    cloud.sandboxes[f"sb-{s1.pk}"].state = "paused"
    open_interval(s2, at=at("2025-03-10 11:00"))
    sandbox(cloud, org_a, s2, at("2025-03-10 11:00"))
    return {"s1": s1, "s2": s2, "row": row, "now": at("2025-03-10 12:00")}


def test_a_clean_day_finds_nothing(org_a, scene):
    result = reconcile_day(org_a, DAY, now=scene["now"])
    assert result.provider_seen
    assert list(result.found.all()) == []
    assert result.ledger_amount == result.interval_amount == scene["row"].amount
    assert not result.alerted


def test_finds_phantom_ghost_and_drift(org_a, alice, cloud, scene):
    s1, s2 = scene["s1"], scene["s2"]
    cloud.sandboxes[f"sb-{s1.pk}"].state = "running"  # ran on at E2B after our pause
    cloud.sandboxes.pop(f"sb-{s2.pk}")  # killed behind our back
    reverse_cost_event(scene["row"], reason="test", actor=alice)
    result = reconcile_day(org_a, DAY, now=scene["now"])
    assert kinds(result) == {
        (K.PHANTOM, s1.pk): Decimal("5400.000"),  # 10:30 -> 12:00
        (K.GHOST, s2.pk): Decimal("-3600.000"),  # 11:00 -> 12:00
        (K.DRIFT, s1.pk): Decimal("1800.000"),  # the reversed half hour
    }
    assert result.alerted
    assert AuditEvent.objects.filter(action="reconciliation.alert").exists()
    phantom = result.found.get(kind=K.PHANTOM)
    assert phantom.amount == (Decimal(5400) * per_second(s1)).quantize(QUANTUM)
    # Settle everything; the next run finds nothing more.
    for d in result.found.all():
        settle(d, method="adjust", reason="matches the E2B invoice", actor=alice)
    again = reconcile_day(org_a, DAY, now=scene["now"])
    assert list(again.found.all()) == []
    assert AuditEvent.objects.filter(action="reconciliation.settled").count() == 3


def test_a_settlement_is_written_once_with_a_reason(org_a, alice, cloud, scene):
    cloud.sandboxes.pop(f"sb-{scene['s2'].pk}")
    d = reconcile_day(org_a, DAY, now=scene["now"]).found.get()
    with pytest.raises(SettleRefused, match="Reason"):
        settle(d, method="adjust", reason=" ", actor=alice)
    row = settle(d, method="adjust", reason="killed by E2B", actor=alice)
    assert row.amount == d.amount < 0 and "killed by E2B" in row.reason
    with pytest.raises(SettleRefused, match="settled already"):
        settle(d, method="adjust", reason="again", actor=alice)
    assert CostEvent.objects.filter(idempotency_key__startswith="settlement:").count() == 1


def test_drift_settled_by_reversing_a_double_billed_row(org_a, alice, scene):
    # The same half hour billed twice (e.g. a row written by hand in a migration).
    row = scene["row"]
    CostEvent.objects.create(
        **{
            f.attname: getattr(row, f.attname)
            for f in CostEvent._meta.concrete_fields
            if f.attname not in ("id", "idempotency_key", "created_at")
        },
        idempotency_key="double",
    )
    d = reconcile_day(org_a, DAY, now=scene["now"]).found.get()
    assert (d.kind, d.seconds) == (K.DRIFT, Decimal("-1800.000"))
    with pytest.raises(SettleRefused, match="Entry"):
        settle(d, method="reverse", reason="double", actor=alice, entry_id=999999)
    settle(d, method="reverse", reason="double", actor=alice, entry_id=row.pk)
    assert list(reconcile_day(org_a, DAY, now=scene["now"]).found.all()) == []


def test_provider_down_still_reports_drift(org_a, alice, cloud, scene):
    from pools.providers.base import ProviderError

    cloud.fail_next("list_sandboxes", ProviderError("E2B is down", permanent=False))
    reverse_cost_event(scene["row"], reason="test", actor=alice)
    result = reconcile_day(org_a, DAY, now=scene["now"])
    assert not result.provider_seen and "E2B is down" in result.provider_error
    assert kinds(result) == {(K.DRIFT, scene["s1"].pk): Decimal("1800.000")}


def test_the_daily_job_reconciles_yesterday(org_a, cloud, scene, settings):
    assert "billing.recon_runs.reconcile_yesterday" in {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    reconcile_yesterday("2025-03-10")
    assert ReconciliationRun.objects.filter(org=org_a, day=DAY).exists()


# --- the stateful property ---------------------------------------------------------------

T0 = at("2025-03-10 08:00")
_examples = itertools.count()


@dataclass
class Box:
    pk: int
    state: str = "running"  # running | paused | stopped | killed | leaked
    spans: list[list[Any]] = field(default_factory=list)


class ReconcileMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        n = next(_examples)
        self.org = OrganizationFactory.create(slug=f"recon-{n}", name=f"Recon {n}")
        self.user = member(f"fin-{n}", self.org, "finance")
        make_pool(self.org, "f", provider="fake")
        self.now = T0
        self.boxes: dict[int, Box] = {}
        self.reversed: dict[int, Decimal] = {}  # session -> seconds reversed
        # A February row, then February closed: its total must never move.
        feb = make_session(self.org, provider="fake")
        self.feb_row = run(feb, at("2025-02-10 10:00"), at("2025-02-10 11:00"))
        Session.objects.filter(pk=feb.pk).update(state=SessionState.TERMINATED)
        self.feb_close = close_month(self.org, date(2025, 2, 1), actor=self.user)
        self.feb_reversed = False

    def _ids(self, *states: str) -> list[int]:
        return sorted(pk for pk, b in self.boxes.items() if b.state in states)

    def _session(self, pk: int) -> Session:
        return Session.objects.get(pk=pk)

    @rule(seconds=st.integers(min_value=1, max_value=900))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(vcpu=st.sampled_from([1, 2, 4]))
    def start(self, vcpu: int) -> None:
        s = make_session(self.org, provider="fake", vcpu=vcpu, started_at=self.now)
        open_interval(s, at=self.now)
        sandbox(CLOUD(), self.org, s, self.now)
        self.boxes[s.pk] = Box(s.pk, spans=[[self.now, None]])

    def _close(self, pk: int, reason: str) -> None:
        assert close_open_interval(self._session(pk), at=self.now, reason=reason)
        self.boxes[pk].spans[-1][1] = self.now

    @precondition(lambda self: self._ids("running"))
    @rule(data=st.data())
    def pause(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(self._ids("running")))
        self._close(pk, "pause")
        CLOUD().sandboxes[f"sb-{pk}"].state = "paused"
        self.boxes[pk].state = "paused"

    @precondition(lambda self: self._ids("paused"))
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(self._ids("paused")))
        open_interval(self._session(pk), at=self.now)
        CLOUD().sandboxes[f"sb-{pk}"].state = "running"
        self.boxes[pk].spans.append([self.now, None])
        self.boxes[pk].state = "running"

    @precondition(lambda self: self._ids("running", "paused"))
    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(self._ids("running", "paused")))
        if self.boxes[pk].state == "running":
            self._close(pk, "terminate")
        CLOUD().sandboxes.pop(f"sb-{pk}")
        self.boxes[pk].state = "stopped"

    @precondition(lambda self: self._ids("running"))
    @rule(data=st.data())
    def kill_behind_our_back(self, data: st.DataObject) -> None:
        """E2B loses the sandbox; our interval stays open: ghost seconds."""
        pk = data.draw(st.sampled_from(self._ids("running")))
        CLOUD().sandboxes.pop(f"sb-{pk}")
        self.boxes[pk].state = "killed"

    @precondition(lambda self: self._ids("running"))
    @rule(data=st.data())
    def terminate_fails_at_the_provider(self, data: st.DataObject) -> None:
        """We close our interval, the sandbox keeps running: phantom seconds."""
        pk = data.draw(st.sampled_from(self._ids("running")))
        self._close(pk, "terminate")
        self.boxes[pk].state = "leaked"

    @precondition(
        lambda self: CostEvent.objects.filter(
            org=self.org, reverses__isnull=True, reversed_by__isnull=True, occurred_at__gte=T0
        ).exists()
    )
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        rows = list(
            CostEvent.objects.filter(
                org=self.org, reverses__isnull=True, reversed_by__isnull=True, occurred_at__gte=T0
            ).order_by("pk")
        )
        row = data.draw(st.sampled_from(rows))
        reverse_cost_event(row, reason="property", actor=self.user)
        assert row.session_id is not None
        self.reversed[row.session_id] = self.reversed.get(row.session_id, Decimal(0)) + (
            row.quantity_seconds
        )

    @precondition(lambda self: not self.feb_reversed)
    @rule()
    def reverse_in_the_closed_month(self) -> None:
        reversal = reverse_cost_event(self.feb_row, reason="late credit", actor=self.user)
        assert reversal.adjusts_month == date(2025, 2, 1)
        self.feb_reversed = True

    # --- the check ---------------------------------------------------------------------
    def _expected(self) -> dict[tuple[str, int | None], Decimal]:
        want: dict[tuple[str, int | None], Decimal] = {}
        for pk, b in self.boxes.items():
            if b.state == "killed" and self.now > b.spans[-1][0]:
                want[(K.GHOST, pk)] = -_secs(self.now - b.spans[-1][0])
            if b.state == "leaked" and self.now > b.spans[-1][1]:
                want[(K.PHANTOM, pk)] = _secs(self.now - b.spans[-1][1])
        for pk, seconds in self.reversed.items():
            if seconds:
                want[(K.DRIFT, pk)] = seconds
        return want

    def teardown(self) -> None:
        found = reconcile_day(self.org, DAY, now=self.now)
        assert kinds(found) == self._expected()  # every seeded one, and nothing else
        for d in found.found.all():
            settle(d, method="adjust", reason="property", actor=self.user)
        assert list(reconcile_day(self.org, DAY, now=self.now).found.all()) == []
        # Ledger = intervals x rates (+ the provider's corrections) = the report's total.
        day_rows = CostEvent.objects.filter(
            org=self.org,
            interval_end__gt=at("2025-03-10 00:00"),
            interval_end__lte=at("2025-03-11 00:00"),
        )
        corrections = day_rows.filter(settles__kind__in=[K.PHANTOM, K.GHOST])
        priced = Decimal(0)
        for pk, b in self.boxes.items():
            s = self._session(pk)
            for start, end in b.spans:
                if end is not None:
                    priced += (_secs(end - start) * per_second(s)).quantize(QUANTUM)
        assert day_rows.exclude(pk__in=corrections).total_amount() == priced
        period = Period(date(2025, 2, 1), date(2025, 3, 31), "custom")
        report = cost_per_issue(CostFilter(self.org.pk, period)).totals.amount
        assert report == ledger_sum(org=self.org)
        assert month_totals(self.org.pk, date(2025, 2, 1))["amount"] == self.feb_close.amount
        # Leave nothing open for the next example.
        for pk, b in self.boxes.items():
            if b.state in ("running", "killed"):
                close_open_interval(self._session(pk), at=self.now, reason="test-end")


def _secs(delta: timedelta) -> Decimal:
    return (Decimal(delta // timedelta(microseconds=1)) / Decimal(1_000_000)).quantize(
        Decimal("0.001")
    )


_CLOUD: list[Any] = []


def CLOUD() -> Any:  # the fake's shared cloud for this test run
    return _CLOUD[-1]


def test_reconciliation_properties(cloud):
    _CLOUD.append(cloud)
    try:
        run_state_machine_as_test(
            ReconcileMachine,
            settings=settings(
                max_examples=int(os.environ.get("PROP_EXAMPLES", 20)),
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        _CLOUD.pop()


# --- pages -------------------------------------------------------------------------------


def test_pages_roles_walls_and_bad_input(
    client_as, org_a, alice, bob, fiona, charlie, cloud, scene
):
    cloud.sandboxes.pop(f"sb-{scene['s2'].pk}")
    result = reconcile_day(org_a, DAY, now=scene["now"])
    d = result.found.get()
    assert client_as(bob).get("/billing/reconciliation/").status_code == 403
    listing = client_as(fiona).get("/billing/reconciliation/")
    assert listing.status_code == 200 and b"2025-03-10" in listing.content
    assert b"data-alert" in listing.content  # 3,600 s past the 60 s threshold
    detail = client_as(fiona).get(f"/billing/reconciliation/{result.pk}/")
    assert f"/sessions/{scene['s2'].pk}/".encode() in detail.content  # links to its session
    # Another org's run and finding are 404.
    assert client_as(charlie).get(f"/billing/reconciliation/{result.pk}/").status_code == 404
    url = f"/billing/reconciliation/findings/{d.pk}/settle/"
    assert client_as(charlie).post(url, {"method": "adjust", "reason": "x"}).status_code == 404
    # Bad input: a clear message and a 4xx, nothing written.
    bad = client_as(fiona).post(url, {"method": "adjust", "reason": ""})
    assert bad.status_code == 400 and b"Reason: say why" in bad.content
    assert client_as(fiona).post(url, {"method": "nope", "reason": "x"}).status_code == 400
    for day in ("2025-13-01", "", "2999-01-01"):
        refused = client_as(fiona).post("/billing/reconciliation/run/", {"day": day})
        assert refused.status_code == 400 and b"Day:" in refused.content
    assert not Discrepancy.objects.filter(settled_at__isnull=False).exists()
    done = client_as(fiona).post(url, {"method": "adjust", "reason": "E2B lost it"})
    assert done.status_code == 302
    assert client_as(alice).post(url, {"method": "adjust", "reason": "again"}).status_code == 409
    assert CostEvent.objects.filter(idempotency_key=f"settlement:discrepancy-{d.pk}").count() == 1


def test_reconcile_now_runs_a_day(client_as, org_a, fiona, cloud, scene):
    response = client_as(fiona).post("/billing/reconciliation/run/", {"day": "2025-03-10"})
    assert response.status_code == 302
    made = ReconciliationRun.objects.get(org=org_a)
    assert made.actor == fiona and made.channel == "web"
    assert AuditEvent.objects.get(action="reconciliation.run").actor == fiona


# --- the real SDK against the emulator ---------------------------------------------------


def test_e2bs_own_list_through_the_sdk(e2b_settings, org_a):
    """The provider's view comes from E2B's list API (state and started_at), through the
    real ``e2b`` SDK against the emulator: a sandbox we no longer meter is phantom, an open
    interval whose sandbox E2B killed is ghost."""
    import uuid

    from django.utils import timezone

    from pools.config import validate_e2b_config
    from pools.providers import for_pool
    from pools.providers.base import SandboxSpec
    from tests.factories import CapacityPoolFactory

    config = validate_e2b_config({"templateId": "base"})
    pool = CapacityPoolFactory.create(org=org_a, provider="e2b", config=config)
    provider = for_pool(pool, timeout=10)
    leaked = make_session(org_a, pool=pool)
    killed = make_session(org_a, pool=pool)
    handles = {}
    for s in (leaked, killed):
        spec = SandboxSpec(session_id=str(s.pk), request_id=str(uuid.uuid4()), org_slug="org-a")
        handles[s.pk] = provider.provision(config, spec)
        Session.objects.filter(pk=s.pk).update(sandbox_id=handles[s.pk].sandbox_id)
    try:
        began = timezone.now()
        open_interval(leaked, at=began)
        close_open_interval(leaked, at=began + timedelta(milliseconds=1), reason="terminate")
        open_interval(killed, at=began)
        provider.terminate(handles[killed.pk])  # behind our back
        result = reconcile_day(org_a, began.date(), now=began + timedelta(seconds=30))
        assert result.provider_seen, result.provider_error
        found = {(d.kind, d.session_id) for d in result.found.all()}
        assert found == {(K.PHANTOM, leaked.pk), (K.GHOST, killed.pk)}
        phantom = result.found.get(kind=K.PHANTOM)
        assert phantom.sandbox_id == handles[leaked.pk].sandbox_id
        assert Decimal(0) < phantom.seconds <= Decimal(30)  # (cut at midnight, near one)
    finally:
        close_open_interval(killed, at=timezone.now(), reason="test-end")
        provider.terminate(handles[leaked.pk])
