"""Celery tasks of the budgets app."""

from __future__ import annotations

from celery import shared_task

from budgets import sweep


@shared_task(name="budgets.tasks.evaluate_budgets")
def evaluate_budgets() -> dict[str, int]:
    """Beat, every minute: every org's budgets (alerts, blocks, pauses; one pass)."""
    return sweep.evaluate_all()
