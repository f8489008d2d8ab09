"""How money reads on screen: one rule for the pages, the Django admin and the charts.

The ledger keeps 12 decimal places and a 67-second session costs about $0.0022, so rounding
every figure to the cent would show real spending as "$0.00". The rule:

* a cent or more (either sign): two decimals, half up, thousands separated: ``$1,234.50``,
  ``-$12.00``;
* above zero but under a cent: two significant digits, half up, so the figure is never
  zero: ``$0.0022``, ``$0.0050`` (for 0.004999), ``-$0.0022`` for a reversal; a value that
  rounds up to a whole cent reads as the cent (0.00999 → ``$0.01``);
* exactly zero: ``$0.00`` (never ``-$0.00``); no value (``None`` or ``""``): empty text.

Screens put the exact stored amount in a ``title`` tooltip (the ``exact`` filter); the CSV
export writes it unrounded and never goes through this module.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")
SIGNIFICANT = 2  # digits kept for amounts under a cent
SYMBOLS = {"USD": "$"}


def to_decimal(value: Any) -> Decimal | None:
    """A Decimal from what templates and the ORM hand over; None for nothing or nonsense."""
    if value is None or value == "":
        return None
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _rounded(amount: Decimal) -> Decimal:
    size = abs(amount)
    if size == 0 or size >= CENT:
        return amount.quantize(CENT, rounding=ROUND_HALF_UP)
    # The exponent of the last significant digit kept: 0.0022 → -4, 0.000014 → -6.
    quantum = Decimal(1).scaleb(size.adjusted() - SIGNIFICANT + 1)
    small = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    return small if abs(small) < CENT else amount.quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(value: Any, currency: str = "USD") -> str:
    """An amount as a person reads it: ``$1,234.57``, ``$0.0022``, ``-$0.0022``, ``$0.00``.

    The rule is in this module's docstring. Display only: never parse the result.
    """
    amount = to_decimal(value)
    if amount is None:
        return ""
    shown = _rounded(amount)
    sign = "-" if shown < 0 else ""  # a zero is never "-$0.00": it rounds to Decimal("0.00")
    digits = f"{abs(shown):,f}"
    symbol = SYMBOLS.get(currency or "USD")
    if symbol:
        return f"{sign}{symbol}{digits}"
    return f"{sign}{digits} {currency}"


def format_usd(value: Any) -> str:
    """``format_money`` in US dollars, the only currency the rate cards use today."""
    return format_money(value, "USD")
