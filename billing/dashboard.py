"""Cost figures other pages embed (dashboard home, session detail).

Both functions run a fixed number of queries. Their templates show nothing to people
without ``billing.view`` (they check ``nav_can.billing`` from the navigation context
processor), but call the functions only for people who may see cost:

    # sessions view (billing hands these down at start-up: sessions/costs.py)
    from sessions.costs import cost_summary, session_cost
    if request.membership.can("billing.view"):
        context["cost"] = cost_summary(request.org)          # dashboard
        context["session_cost"] = session_cost(session)      # session detail

    {% include "billing/_dashboard_cost.html" with cost=cost %}
    {% include "billing/_session_ledger.html" with cost=session_cost %}
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from billing.ledger import NoRateCard, billing_provider, exact_seconds, price, rate_card_for
from billing.models import AMOUNT_QUANTUM, CostEvent, DailyCost
from rensei.models import Organization
from sessions.models import Issue, RunningInterval, Session

ZERO = Decimal(0)
SESSION_ROWS = 50  # the newest rows on the session page; the ledger page has them all


def cost_summary(org: Organization, now: datetime | None = None) -> dict[str, Any]:
    """Context for templates/billing/_dashboard_cost.html: cost today and this month (UTC,
    billed so far) and the five most expensive issues this month. Two queries."""
    today = (now or timezone.now()).astimezone(UTC).date()
    first = today.replace(day=1)
    month = DailyCost.objects.filter(org=org, day__gte=first, day__lte=today)
    sums = month.aggregate(month=Sum("amount"), today=Sum("amount", filter=Q(day=today)))
    top = _top_issues(month.filter(issue__isnull=False), 5)
    return {
        "currency": "USD",
        "today": (sums["today"] or ZERO).quantize(AMOUNT_QUANTUM),
        "month": (sums["month"] or ZERO).quantize(AMOUNT_QUANTUM),
        "today_date": today,
        "month_start": first,
        "top_issues": [
            {
                "key": t["issue__key"],
                "title": t["issue__title"],
                "amount": t["amount"].quantize(AMOUNT_QUANTUM),
            }
            for t in top
        ],
    }


def _top_issues(rows: QuerySet[DailyCost], n: int) -> list[dict[str, Any]]:
    """The ``n`` issues with the most cost in ``rows`` (ties by key), with key and title.

    On PostgreSQL the rollup rows are grouped by issue id alone and ranked by cost, and only
    the top ``n`` (with any tied with the last, for the tie-break by key) are joined to their
    keys: joining before grouping read every issue the org has, whatever the month holds.
    Elsewhere, one grouped join.
    """
    if connections[rows.db].vendor != "postgresql":
        labelled = rows.values("issue_id", "issue__key", "issue__title")
        labelled = labelled.annotate(amount=Sum("amount")).filter(amount__gt=0)
        return [dict(t) for t in labelled.order_by("-amount", "issue__key")[:n]]
    grouped = rows.values("issue_id").annotate(amount=Sum("amount")).filter(amount__gt=0)
    inner, params = grouped.order_by("-amount").query.sql_with_params()
    sql = (
        'SELECT t.issue_id, i."key", i.title, t.amount '
        f"FROM ({inner} FETCH FIRST %s ROWS WITH TIES) t "
        f"JOIN {Issue._meta.db_table} i ON i.id = t.issue_id "
        'ORDER BY t.amount DESC, i."key" LIMIT %s'
    )
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, (*params, n, n))
        return [
            {"issue_id": pk, "issue__key": key, "issue__title": title, "amount": amount}
            for pk, key, title, amount in cursor.fetchall()
        ]


def session_cost(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Context for templates/billing/_session_ledger.html: the session's ledger rows (the
    newest 50), the billed total, and while a running interval is open, a live estimate
    = billed so far + open seconds × the rate. At most four queries."""
    now = now or timezone.now()
    rows = CostEvent.objects.filter(session_id=session.pk)
    totals = rows.totals()
    billed = totals["amount"]
    recent = list(
        rows.select_related("rate_card", "reverses", "reversed_by").order_by("-occurred_at", "-id")[
            :SESSION_ROWS
        ]
    )
    open_interval = RunningInterval.objects.filter(
        session_id=session.pk, ended_at__isnull=True
    ).first()
    estimate = open_seconds = None
    if open_interval is not None:
        open_seconds = exact_seconds(max(now - open_interval.started_at, timedelta(0)))
        try:
            card = rate_card_for(billing_provider(session), open_interval.started_at)
        except NoRateCard:
            card = None
        if card is not None:
            estimate = billed + price(open_seconds, session.vcpu or 0, session.memory_mb or 0, card)
    return {
        "session_id": session.pk,
        "ledger_query": (
            f"session={session.pk}&range=custom"
            f"&start={session.created_at.astimezone(UTC):%Y-%m-%d}&end={now.astimezone(UTC):%Y-%m-%d}"
        ),
        "currency": "USD",
        "rows": recent,
        "count": totals["n"],
        "more": max(totals["n"] - len(recent), 0),
        "total": billed,
        "seconds": totals["seconds"],
        "running": open_interval is not None,
        "open_since": open_interval.started_at if open_interval else None,
        "open_seconds": open_seconds,
        "estimate": estimate,
        "as_of": now,
    }
