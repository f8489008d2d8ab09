"""Rate cards, the append-only cost ledger and its daily rollup.

The ledger (``CostEvent``) is append-only at every layer: the model refuses ``save()`` on an
existing row and ``delete()``, its QuerySet refuses ``update()`` and ``delete()``, the admin
is read-only, and the database itself rejects UPDATE and DELETE with a trigger
(``billing/triggers.py``). A correction is a new row that reverses the original
(``billing.ledger.reverse_cost_event``).

``DailyCost`` is the ledger summed per (org, usage day, issue, pool, provider). A database
trigger adds every inserted ledger row to it in the same statement, so it can never disagree
with the ledger, whatever path wrote the row (``emit_sandbox_cost_event``, a reversal,
``bulk_create`` in a benchmark). Reports read it instead of scanning the ledger.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce

from pools.models import CapacityPool
from rensei.models import Organization
from sessions.models import Issue, Session

# Amounts keep 12 decimal places: one millisecond of 512 MiB RAM is ~2.25e-9 USD.
AMOUNT_PLACES = 12
AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)
SECONDS_QUANTUM = Decimal("0.001")


class LedgerIsAppendOnly(Exception):
    """Someone tried to change or delete a ledger row. Record a reversing row instead."""

    def __init__(self, what: str = "changed") -> None:
        super().__init__(
            f"Ledger rows are never {what}; record a reversing row instead "
            "(billing.ledger.reverse_cost_event, or 'Reverse entry' in the admin)."
        )


def usage_day(occurred_at: datetime) -> date:
    """The UTC day a ledger row belongs to.

    A cost event occurs when its interval ends, and the daily accrual ends intervals exactly
    at midnight, so a day owns the events in (00:00, next 00:00]: the row closed at
    00:00:00 UTC belongs to the day that just ended. The rollup trigger computes the same.
    """
    return (occurred_at.astimezone(UTC) - timedelta(microseconds=1)).date()


class RateCard(models.Model):
    """Prices per second of allocated resources, from ``effective_from`` on.

    The card in effect when an interval starts prices it. Cards change only at a UTC
    midnight, and the daily accrual splits running intervals there, so a new rate applies
    exactly from its effective time. A card is never edited once in effect: rows keep the
    card and the amount they were written with.
    """

    provider = models.CharField(max_length=32, default="e2b")
    effective_from = models.DateTimeField(help_text="UTC; a future midnight (00:00:00 UTC).")
    vcpu_second_price = models.DecimalField(
        "price per vCPU-second", max_digits=20, decimal_places=12
    )
    gib_second_price = models.DecimalField(
        "price per GiB-second of RAM", max_digits=20, decimal_places=12
    )
    currency = models.CharField(max_length=3, default="USD")
    basis = models.CharField(max_length=100, default="allocated vCPU and RAM, per running second")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "effective_from"], name="ratecard_unique_provider_from"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} from {self.effective_from:%Y-%m-%d %H:%M} UTC"


class CostKind(models.TextChoices):
    SANDBOX_SECONDS = "sandbox-seconds", "Sandbox seconds"
    # A correction with a reason: a reconciliation finding settled, or a late row for a
    # closed month (then dated in the first open month, ``adjusts_month`` saying which).
    ADJUSTMENT = "adjustment", "Adjustment"


class CostEventQuerySet(models.QuerySet["CostEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise LedgerIsAppendOnly("updated")

    def delete(self) -> NoReturn:  # type: ignore[override]
        raise LedgerIsAppendOnly("deleted")

    def reversals(self) -> CostEventQuerySet:
        return self.filter(reverses__isnull=False)

    def totals(self) -> dict[str, Any]:
        """Row count, amount and seconds of these rows (reversals included, so net).

        Quantised to the stored places: SQLite sums decimals through floats, and the
        quantisation gives every backend the same digits.
        """
        t = self.aggregate(
            n=models.Count("id"),
            amount=models.Sum("amount"),
            seconds=models.Sum("quantity_seconds"),
        )
        return {
            "n": t["n"],
            "amount": (t["amount"] or Decimal(0)).quantize(AMOUNT_QUANTUM),
            "seconds": (t["seconds"] or Decimal(0)).quantize(SECONDS_QUANTUM),
        }

    def total_amount(self) -> Decimal:
        amount: Decimal = self.totals()["amount"]
        return amount

    def in_period(self, start: datetime, end: datetime) -> CostEventQuerySet:
        """Rows whose usage day lies in [start, end) for midnight bounds (see usage_day)."""
        return self.filter(occurred_at__gt=start, occurred_at__lte=end)


CostEventManager = models.Manager.from_queryset(CostEventQuerySet)


class CostEvent(models.Model):
    """One ledger row. Never updated or deleted; a correction is a new row that reverses it."""

    # Indexed by cost_org_occurred_cover_idx (below), which leads with the org: the column
    # has no index of its own.
    org = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="cost_events", db_index=False
    )
    session = models.ForeignKey(
        Session, on_delete=models.PROTECT, null=True, blank=True, related_name="cost_events"
    )
    issue = models.ForeignKey(
        Issue, on_delete=models.PROTECT, null=True, blank=True, related_name="cost_events"
    )
    # Indexed by cost_pool_org_occurred_id_idx (below), which leads with the pool: it serves
    # the foreign key's own lookups too, so the column has no index of its own.
    pool = models.ForeignKey(
        CapacityPool,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="cost_events",
        db_index=False,
    )
    provider = models.CharField(max_length=32)
    kind = models.CharField(
        max_length=32, choices=CostKind.choices, default=CostKind.SANDBOX_SECONDS
    )
    quantity_seconds = models.DecimalField(max_digits=18, decimal_places=3)
    vcpu = models.PositiveIntegerField()
    memory_mb = models.PositiveIntegerField()
    rate_card = models.ForeignKey(RateCard, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(max_digits=24, decimal_places=AMOUNT_PLACES)
    currency = models.CharField(max_length=3, default="USD")
    interval_start = models.DateTimeField(null=True, blank=True)
    interval_end = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    reverses = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by"
    )
    reason = models.TextField(blank=True)
    # The closed month (its first day) this row corrects; it is dated in an open month.
    adjusts_month = models.DateField(null=True, blank=True)
    # PROTECT, not SET_NULL: nulling the column would be an UPDATE of a ledger row, which
    # the database refuses. Deactivate people who reversed entries instead of deleting them.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CostEventManager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # Cost per Issue and the ledger: an org's rows in a time range. With the id, the
            # ledger page's id scan (billing/ledger_pages.py) is index-only and in its order.
            # The included columns make Cost by outcome's scan of a period's rows (their
            # session, pool and amount, billing/outcome_costs.py) index-only on PostgreSQL
            # too; other backends index the key columns alone.
            models.Index(
                fields=["org", "occurred_at", "id"],
                include=["session", "pool", "provider", "amount"],
                name="cost_org_occurred_cover_idx",
            ),
            # An issue's rows, for its cost page's ledger likewise.
            models.Index(
                fields=["org", "issue", "occurred_at", "id"], name="cost_org_issue_id_idx"
            ),
            # The ledger filtered by pool, likewise: without it a page deep in the list reads
            # every row of the period it skips to check its pool.
            models.Index(
                fields=["pool", "org", "occurred_at", "id"], name="cost_pool_org_occurred_id_idx"
            ),
        ]
        permissions = [("reverse_costevent", "Can reverse a ledger entry")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency} ({self.idempotency_key})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerIsAppendOnly("updated")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise LedgerIsAppendOnly("deleted")

    @property
    def is_reversal(self) -> bool:
        return self.reverses_id is not None

    @property
    def usage_day(self) -> date:
        return usage_day(self.occurred_at)


class DailyCost(models.Model):
    """The ledger summed per (org, usage day, issue, pool, provider); written only by the
    database trigger on ledger inserts (see billing/triggers.py), never by application code.

    Reversals are summed in too, so every figure is the net. The foreign keys carry no
    database constraint: the rollup is derived data and must never block anything.
    """

    org = models.ForeignKey(
        Organization, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    day = models.DateField()
    issue = models.ForeignKey(
        Issue, on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="+"
    )
    pool = models.ForeignKey(
        CapacityPool, on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="+"
    )
    provider = models.CharField(max_length=32)
    amount = models.DecimalField(max_digits=30, decimal_places=AMOUNT_PLACES)
    quantity_seconds = models.DecimalField(max_digits=24, decimal_places=3)
    vcpu_seconds = models.DecimalField(max_digits=24, decimal_places=3)
    entries = models.IntegerField()

    class Meta:
        constraints = [
            # The trigger's ON CONFLICT target. COALESCE so rows without an issue or a pool
            # (NULL) still collapse into one row per day.
            models.UniqueConstraint(
                "org",
                "day",
                Coalesce("issue", 0),
                Coalesce("pool", 0),
                "provider",
                name="dailycost_unique_key",
            )
        ]
        indexes = [
            # Cost per Issue, the dashboard, month close: an org's days in a range, read from
            # the index alone on PostgreSQL (SQLite has no INCLUDE: the same index without it).
            models.Index(
                fields=["org", "day"],
                include=[
                    "issue",
                    "pool",
                    "provider",
                    "amount",
                    "quantity_seconds",
                    "vcpu_seconds",
                    "entries",
                ],
                name="dailycost_org_day_cover_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.org_id} {self.day} issue {self.issue_id}: {self.amount}"


# Closed months and reconciliation runs live in their own module; imported here so Django
# registers them with the app.
from billing.finance_models import (  # noqa: E402
    Discrepancy as Discrepancy,
)
from billing.finance_models import (  # noqa: E402
    DiscrepancyKind as DiscrepancyKind,
)
from billing.finance_models import (  # noqa: E402
    MonthClose as MonthClose,
)
from billing.finance_models import (  # noqa: E402
    ReconciliationRun as ReconciliationRun,
)
