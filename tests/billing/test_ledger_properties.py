"""Property test: whatever sessions do, the ledger bills exactly the running time.

Random sequences of run / pause / resume / terminate / lose / clock moves / UTC midnights
(with the daily accrual on time, late or skipped) / duplicate emissions / reversals / rate
changes drive real sessions through sessions.intervals, under a frozen, moved clock. After
every step:

- the ledger total equals Σ running seconds × rate for every interval, exactly, in Decimal,
  minus what was reversed;
- paused time is never billed: the billed intervals are exactly the running stretches;
- no idempotency key appears twice;
- Cost per Issue (the function the page uses) equals the ledger for the same filter
  (checked at every midnight and, for several filters and per issue, at the end).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db.models import Count
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from billing.analytics import CostFilter, cost_per_issue, ledger_rows, rollup_totals
from billing.ledger import AlreadyReversed, emit_sandbox_cost_event, reverse_cost_event
from billing.models import CostEvent
from billing.periods import Period, midnight_floor, midnights_between
from billing.tasks import daily_accrual
from sessions.intervals import close_open_interval, open_interval
from sessions.models import RunningInterval, Session, SessionState
from tests.billing.helpers import make_issue, make_pool
from tests.factories import OrganizationFactory, RateCardFactory, SessionFactory

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
QUANTUM = Decimal("1e-12")
_examples = itertools.count()


@dataclass
class Model:
    """What we believe happened to one session."""

    vcpu: int
    memory_mb: int
    issue: int | None
    pool: int
    state: str = SessionState.RUNNING
    # [start, end]; end is None while the interval is open.
    spans: list[list[Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return bool(self.spans) and self.spans[-1][1] is None


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        n = next(_examples)
        self.travel = time_machine.travel(T0, tick=False)
        self.clock = self.travel.start()
        self.now = T0
        self.org = OrganizationFactory.create(slug=f"prop-{n}", name=f"Property {n}")
        # A provider of its own, so this example's rate changes touch no other example.
        self.provider = f"prop-{n}"
        RateCardFactory.create(
            provider=self.provider,
            effective_from=datetime(2024, 1, 1, tzinfo=UTC),
            vcpu_second_price=Decimal("0.000014"),
            gib_second_price=Decimal("0.0000045"),
        )
        self.rates: list[tuple[datetime, Decimal, Decimal]] = [
            (datetime(2024, 1, 1, tzinfo=UTC), Decimal("0.000014"), Decimal("0.0000045"))
        ]
        self.pools = [make_pool(self.org, "a"), make_pool(self.org, "b")]
        self.issues = [make_issue(self.org, "P-1"), make_issue(self.org, "P-2")]
        self.sessions: dict[int, Model] = {}
        self.reversed = Decimal(0)

    def teardown(self) -> None:
        # The accrual job is global: leave no interval open for the next example's run.
        try:
            self.check_at_the_end()
            for pk, m in self.sessions.items():
                if m.open:
                    close_open_interval(Session.objects.get(pk=pk), at=self.now, reason="test-end")
        finally:
            self.travel.stop()

    # --- helpers -------------------------------------------------------------------------
    def _ids(self, *states: str) -> list[int]:
        return sorted(pk for pk, m in self.sessions.items() if m.state in states)

    def _set_state(self, pk: int, state: str, ended: bool = False) -> None:
        values: dict[str, object] = {"state": state}
        if ended:
            values["ended_at"] = self.now
        Session.objects.filter(pk=pk).update(**values)
        self.sessions[pk].state = state

    def _close(self, pk: int, reason: str) -> None:
        closed = close_open_interval(Session.objects.get(pk=pk), at=self.now, reason=reason)
        assert closed is not None
        self.sessions[pk].spans[-1][1] = self.now

    def _rate(self, at: datetime) -> tuple[Decimal, Decimal]:
        _, vcpu, gib = max((r for r in self.rates if r[0] <= at), key=lambda r: r[0])
        return vcpu, gib

    def _expected(self) -> Decimal:
        total = Decimal(0)
        for m in self.sessions.values():
            for start, end in m.spans:
                if end is None:
                    continue
                micros = (end - start) // timedelta(microseconds=1)
                seconds = Decimal(micros) / Decimal(1_000_000)
                vcpu_rate, gib_rate = self._rate(start)
                per_second = m.vcpu * vcpu_rate + Decimal(m.memory_mb) / 1024 * gib_rate
                total += (seconds * per_second).quantize(QUANTUM)
        return total - self.reversed

    # --- rules ---------------------------------------------------------------------------
    @rule(
        vcpu=st.sampled_from([1, 2, 4, 8]),
        memory_mb=st.sampled_from([512, 1024, 2048, 4096]),
        issue=st.sampled_from([0, 1, None]),
        pool=st.sampled_from([0, 1]),
    )
    def start_session(self, vcpu: int, memory_mb: int, issue: int | None, pool: int) -> None:
        session = SessionFactory.create(
            org=self.org,
            issue=self.issues[issue] if issue is not None else None,
            pool=self.pools[pool],
            provider=self.provider,
            vcpu=vcpu,
            memory_mb=memory_mb,
            state=SessionState.RUNNING,
            started_at=self.now,
        )
        open_interval(session, at=self.now)
        self.sessions[session.pk] = Model(vcpu, memory_mb, issue, pool, spans=[[self.now, None]])

    @precondition(lambda self: self._ids(SessionState.RUNNING))
    @rule(data=st.data())
    def pause(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(self._ids(SessionState.RUNNING)))
        self._close(pk, "pause")
        self._set_state(pk, SessionState.PAUSED)

    @precondition(lambda self: self._ids(SessionState.PAUSED))
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(self._ids(SessionState.PAUSED)))
        open_interval(Session.objects.get(pk=pk), at=self.now)
        self.sessions[pk].spans.append([self.now, None])
        self._set_state(pk, SessionState.RUNNING)

    @precondition(lambda self: self._ids(SessionState.RUNNING, SessionState.PAUSED))
    @rule(data=st.data())
    def terminate(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(self._ids(SessionState.RUNNING, SessionState.PAUSED)))
        if self.sessions[pk].open:
            self._close(pk, "terminate")
        else:  # terminating a paused sandbox bills nothing more
            none = close_open_interval(Session.objects.get(pk=pk), at=self.now, reason="terminate")
            assert none is None
        self._set_state(pk, SessionState.TERMINATED, ended=True)

    @precondition(lambda self: self._ids(SessionState.RUNNING))
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(self._ids(SessionState.RUNNING)))
        self._close(pk, "lost")
        self._set_state(pk, SessionState.LOST, ended=True)

    @rule(seconds=st.integers(1, 8 * 3600), millis=st.integers(0, 999))
    def time_passes(self, seconds: int, millis: int) -> None:
        self.now += timedelta(seconds=seconds, milliseconds=millis)
        self.clock.move_to(self.now)

    @rule(late=st.integers(0, 3 * 3600), accrue=st.sampled_from(["on time", "twice", "skipped"]))
    def midnight(self, late: int, accrue: str) -> None:
        """The clock crosses the next UTC midnight; the accrual runs (maybe late) or not."""
        self.now = midnight_floor(self.now) + timedelta(days=1, seconds=late)
        self.clock.move_to(self.now)
        if accrue == "skipped":
            return
        boundary = midnight_floor(self.now)
        splits = daily_accrual()
        if accrue == "twice":
            assert daily_accrual() == 0
        expected_splits = 0
        for m in self.sessions.values():
            if not m.open:
                continue
            start = m.spans[-1][0]
            assert start is not None
            for at in midnights_between(start, boundary):  # catch-up: every missed midnight
                m.spans[-1][1] = at
                m.spans.append([at, None])
                expected_splits += 1
        assert splits == expected_splits
        # Days change here: the moment the report's day buckets matter most.
        self._check_report(Period(T0.date(), self.now.date(), "custom"), None, per_issue=False)

    @precondition(lambda self: len(self.rates) < 4)
    @rule(
        vcpu=st.sampled_from(["0.00001", "0.00002"]), gib=st.sampled_from(["0.000004", "0.000006"])
    )
    def new_rate_from_next_midnight(self, vcpu: str, gib: str) -> None:
        effective = midnight_floor(self.now) + timedelta(days=1)
        if any(r[0] == effective for r in self.rates):
            return
        RateCardFactory.create(
            provider=self.provider,
            effective_from=effective,
            vcpu_second_price=Decimal(vcpu),
            gib_second_price=Decimal(gib),
        )
        self.rates.append((effective, Decimal(vcpu), Decimal(gib)))

    @rule(data=st.data())
    def duplicate_emission(self, data: st.DataObject) -> None:
        closed = list(
            RunningInterval.objects.filter(session__org=self.org, ended_at__isnull=False)
            .select_related("session", "session__pool")
            .order_by("pk")
        )
        if not closed:
            return
        interval = data.draw(st.sampled_from(closed))
        before = CostEvent.objects.filter(org=self.org).count()
        first = CostEvent.objects.get(idempotency_key__endswith=f":interval-{interval.pk}")
        assert emit_sandbox_cost_event(interval).pk == first.pk
        assert CostEvent.objects.filter(org=self.org).count() == before

    @rule(data=st.data())
    def reversal(self, data: st.DataObject) -> None:
        candidates = list(
            CostEvent.objects.filter(
                org=self.org, reverses__isnull=True, reversed_by__isnull=True
            ).order_by("pk")
        )
        if not candidates:
            return
        row = data.draw(st.sampled_from(candidates))
        reverse_cost_event(row, reason="property test", actor=None)
        self.reversed += row.amount
        with pytest.raises(AlreadyReversed):
            reverse_cost_event(row, reason="again", actor=None)

    # --- invariants ----------------------------------------------------------------------
    @invariant()
    def ledger_bills_exactly_the_running_time(self) -> None:
        rows = list(CostEvent.objects.filter(org=self.org))
        assert sum((r.amount for r in rows), Decimal(0)) == self._expected()
        billed = sorted(
            (r.session_id, r.interval_start, r.interval_end) for r in rows if r.reverses_id is None
        )
        running = sorted(
            (pk, start, end)
            for pk, m in self.sessions.items()
            for start, end in m.spans
            if end is not None
        )
        # Exactly the running stretches are billed: paused time never is.
        assert billed == running
        for r in rows:
            if r.reverses_id is None:
                assert r.interval_start is not None and r.interval_end is not None
                micros = (r.interval_end - r.interval_start) // timedelta(microseconds=1)
                assert r.quantity_seconds == Decimal(micros) / Decimal(1_000_000)

    def _check_report(self, period: Period, pool: int | None, per_issue: bool) -> None:
        f = CostFilter(self.org.pk, period, pool, self.provider)
        report = cost_per_issue(f, now=self.now)
        ledger = ledger_rows(f).totals()
        assert report.totals.amount == ledger["amount"]
        assert report.totals.running_seconds == ledger["seconds"]
        assert sum((d[1] for d in report.daily), Decimal(0)) == ledger["amount"]
        assert rollup_totals(f) == ledger  # the ledger page's totals
        if per_issue:
            amounts = {r.issue_id: r.amount for r in report.rows}
            for issue in self.issues:
                expected = ledger_rows(f).filter(issue=issue).total_amount()
                assert amounts.get(issue.pk, Decimal(0)) == expected

    def check_at_the_end(self) -> None:
        """The slower checks, once per example: every filter, every issue, unique keys."""
        dupes = (
            CostEvent.objects.filter(org=self.org)
            .values("idempotency_key")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        assert not dupes.exists()
        for period in (
            Period(T0.date(), self.now.date(), "custom"),
            Period(self.now.date(), self.now.date(), "today"),
        ):
            for pool in (None, self.pools[0].pk):
                self._check_report(period, pool, per_issue=True)


def test_ledger_properties(db):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("PROP_EXAMPLES", 200)),
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
