"""Money and time formatting for billing pages, and the query-string helper for filters.

Money goes through ``billing.money.format_money`` (re-exported here for older imports).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.http import QueryDict
from django.utils.html import escape
from django.utils.safestring import mark_safe

from billing.money import format_money, to_decimal

register = template.Library()

CENT = Decimal("0.01")


def _decimal(value: Any) -> Decimal | None:
    return to_decimal(value)


@register.filter
def money(value: Any, currency: str = "USD") -> str:
    """The one on-screen money rule (``billing.money``): cents, or two significant digits
    under a cent so a real cost never reads $0.00. Pair it with ``title="{{ x|exact }}"``."""
    return format_money(value, currency or "USD")


@register.filter
def exact(value: Any) -> str:
    """The full stored precision, for title attributes and CSV."""
    amount = _decimal(value)
    return "" if amount is None else f"{amount:f}"


@register.filter
def rate(value: Any) -> str:
    """A per-second price without trailing zeros: 0.000014000000 → 0.000014."""
    price = _decimal(value)
    return "" if price is None else f"{price.normalize():f}"


@register.filter
def hours(seconds: Any) -> str:
    """Seconds as hours with two decimals: 5400 → 1.50."""
    s = _decimal(seconds)
    if s is None:
        return ""
    return f"{(s / Decimal(3600)).quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"


@register.filter
def gib(memory_mb: Any) -> str:
    mb = _decimal(memory_mb)
    if mb is None:
        return ""
    return f"{(mb / Decimal(1024)).normalize():f} GiB"


@register.simple_tag(takes_context=True)
def query_with(context: template.Context, **changes: Any) -> str:
    """The current query string with some parameters changed (None or "" removes one).

    Changing anything but the page resets to the first page.
    """
    request = context.get("request")
    params: QueryDict = request.GET.copy() if request is not None else QueryDict(mutable=True)
    if "page" not in changes:
        params.pop("page", None)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.simple_tag
def cost_cells(row: Any, currency: str, total: bool = False) -> str:
    """A Cost per Issue row's five figure cells: sessions, running, paused and vCPU hours,
    and the cost (exact amount in its title). One tag per row: an include of the same cells
    cost a template render each, fifty-two times a page. Every figure is a formatted number;
    only the currency code is text, and it is escaped."""
    amount = exact(row.amount)
    code, shown = escape(currency), escape(money(row.amount, currency))
    marker = f' data-total="{amount}"' if total else ""
    cells = (
        f'<td class="text-end">{intcomma(row.sessions)}</td>\n'
        f'<td class="text-end">{hours(row.running_seconds)}</td>\n'
        f'<td class="text-end">{hours(row.paused_seconds)}</td>\n'
        f'<td class="text-end">{hours(row.vcpu_seconds)}</td>\n'
        f'<td class="text-end" title="{amount} {code}"{marker}>{shown}</td>'
    )
    return mark_safe(cells)  # numbers, and text escaped above
