"""Budgets for tests, and the sessions and ledger rows their figures read."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from budgets.models import Budget, Enforcement, Scope
from rensei.models import Organization


def budget(org: Organization, amount: str, scope: str = Scope.ORG, **extra: Any) -> Budget:
    extra.setdefault("enforcement", Enforcement.NOTIFY)
    return Budget.objects.create(org=org, scope=scope, amount_usd=Decimal(amount), **extra)
