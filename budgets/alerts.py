"""Threshold alerts: once per budget, period and threshold, whoever crosses it first.

    fire(figure, threshold, now) -> BudgetAlert | None

The alert row's unique constraint (budget, period, threshold) decides: the insert runs in a
savepoint, and a second crossing (another beat, another worker, twenty at once) fails it and
does nothing. The winner's transaction also queues the email (sent once the row commits,
so a rolled-back crossing mails nobody) and shows the in-app banner (``banner``) to the
org's admins and finance.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from billing.money import format_money
from budgets.figures import Figure
from budgets.models import BudgetAlert
from events import outbox, types
from rensei import ops
from rensei.models import Membership, Role

log = logging.getLogger(__name__)
BANNER_DAYS = 7  # an alert shows in the banner for a week


def recipients(org_id: int) -> list[str]:
    return sorted(
        set(
            Membership.objects.filter(org_id=org_id, role__in=[Role.ADMIN, Role.FINANCE])
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )


def fire(figure: Figure, threshold: int, now: datetime) -> BudgetAlert | None:
    budget = figure.budget
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                budget=budget,
                period=figure.period,
                threshold=threshold,
                issue_id=figure.issue_id,
                consumed_usd=figure.consumed,
                amount_usd=figure.amount,
                at=now,
            )
            outbox.emit(
                budget.org_id,
                types.BUDGET_THRESHOLD_CROSSED,
                {
                    "budget": figure.as_json(),
                    "threshold_percent": threshold,
                    "alert": alert.pk,
                },
            )
    except IntegrityError:
        return None  # crossed already: someone else's alert
    ops.bump(ops.ALERT, "budget_threshold")
    to = recipients(budget.org_id)
    if to:
        BudgetAlert.objects.filter(pk=alert.pk).update(emailed_to=len(to))
        subject, body = message(figure, threshold)
        transaction.on_commit(lambda: _send(subject, body, to))
    return alert


def message(figure: Figure, threshold: int) -> tuple[str, str]:
    org = figure.budget.org
    consumed = format_money(figure.consumed, "USD")
    amount = format_money(figure.amount, "USD")
    subject = f"[Rensei] {org.name}: {figure.label} at {threshold} % ({consumed} of {amount})"
    lines = [
        f"{figure.label} of {org.name} has reached {threshold} % of its budget.",
        "",
        f"Spent: {consumed} of {amount} ({figure.percent} %), period {figure.period} (UTC).",
    ]
    if figure.forecast is not None:
        lines.append(f"Month-end forecast: {format_money(figure.forecast, 'USD')}.")
    if figure.projection is not None:
        lines.append(
            f"Projection if its running sandboxes run to their timeout: "
            f"{format_money(figure.projection, 'USD')}."
        )
    lines += ["", f"Enforcement: {figure.budget.get_enforcement_display()}."]
    return subject, "\n".join(lines)


def _send(subject: str, body: str, to: list[str]) -> None:
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to, fail_silently=False)
    except Exception:  # the alert row stands; the banner still shows it
        log.exception("budget alert email could not be sent")


def banner(org_id: int, now: datetime) -> list[BudgetAlert]:
    """The org's alerts of the last week, newest first, for the banner.

    Every page of admins and finance shows it, and most weeks an org has no alert: a cheap
    EXISTS (the alert and its budget, no columns) answers that, and only an org with recent
    alerts pays the read of their budgets, pools and issues for the labels."""
    recent = BudgetAlert.objects.filter(
        budget__org_id=org_id, at__gte=now - timedelta(days=BANNER_DAYS)
    )
    if not recent.exists():
        return []
    return list(
        recent.select_related("budget", "budget__pool", "budget__issue", "issue").order_by(
            "-at", "-id"
        )[:3]
    )
