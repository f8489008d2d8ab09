"""Beat runs the budgets pass: the schedule names the registered task, and the task runs it."""

from __future__ import annotations

import pytest
from django.conf import settings

from budgets import tasks
from budgets.models import BudgetAlert
from rensei.celery import app
from rensei.models import Organization
from sessions.models import Session
from tests.budgets.helpers import budget


def test_the_schedule_names_the_registered_task() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["budgets"]
    assert entry["task"] == "budgets.tasks.evaluate_budgets"
    assert entry["task"] in app.tasks


@pytest.mark.django_db
def test_the_task_runs_every_orgs_pass(org_a: Organization, spent: Session) -> None:
    budget(org_a, "0.10", thresholds=[10])
    done = tasks.evaluate_budgets()
    assert done["orgs"] == 1 and done["alerts"] == 1
    assert BudgetAlert.objects.filter(budget__org=org_a, threshold=10).count() == 1
