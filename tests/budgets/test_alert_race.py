"""Alerts fire once: twenty budget passes at once crossing the same threshold write one alert,
send one email and emit one event (PostgreSQL: real concurrent transactions)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from budgets import sweep
from budgets.models import BudgetAlert
from events.models import Event
from rensei.models import Organization
from sessions.intervals import open_interval
from tests.billing.helpers import make_issue, make_pool, make_session, run
from tests.budgets.helpers import budget
from tests.factories import RateCardFactory

PASSES = 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_passes_alert_once(
    require_postgres: None,
    org_a: Organization,
    alice,
    fiona,  # type: ignore[no-untyped-def]
) -> None:
    alice.email, fiona.email = "alice@example.com", "fiona@example.com"
    alice.save()
    fiona.save()
    RateCardFactory.create(provider="e2b")
    pool = make_pool(org_a, "main")
    session = make_session(org_a, issue=make_issue(org_a, "ENG-1"), pool=pool)
    now = timezone.now()
    start = max(
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now - timedelta(hours=1)
    )
    run(session, start, start + (now - start) / 2)
    open_interval(session, at=now)
    b = budget(org_a, "0.01", thresholds=[50])
    mail.outbox.clear()
    barrier = threading.Barrier(PASSES)
    errors: list[BaseException] = []
    won: list[int] = []

    def one_pass() -> None:
        try:
            barrier.wait()
            won.append(sweep.evaluate_org(org_a.pk)["alerts"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_pass) for _ in range(PASSES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(won) == PASSES and sum(won) == 1
    assert BudgetAlert.objects.filter(budget=b).count() == 1
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == ["alice@example.com", "fiona@example.com"]
    assert Event.objects.filter(org=org_a, type="budget.threshold_crossed").count() == 1
