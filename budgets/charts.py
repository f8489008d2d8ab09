"""Actual vs budget vs forecast for a month, as a server-rendered SVG (no script, no CDN).

One ``<svg role="img">`` labelled by its ``<title>`` and ``<desc>`` (the figures in words, for
screen readers): the cumulative spend per day (a solid line), the budget (a dashed line) and
the month-end forecast (a dotted line from today's spend to the last day). Money is Decimal
everywhere else; floats appear here only to place pixels.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from itertools import count

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from billing.money import format_money

_ids = count(1)
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 200, 70, 24, 14


def month_chart(
    *,
    title: str,
    points: list[tuple[date, Decimal]],
    budget: Decimal,
    forecast: Decimal | None,
    days_in_month: int,
) -> SafeString:
    top = max([budget, forecast or Decimal(0), *(v for _, v in points)]) * Decimal("1.1")
    top = top if top > 0 else Decimal(1)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP

    def x(day: int) -> str:
        return f"{LEFT + (day - 1) / max(days_in_month - 1, 1) * plot_w:.1f}"

    def y(value: Decimal) -> str:
        return f"{TOP + plot_h - float(value / top) * plot_h:.1f}"

    body = [
        format_html(
            '<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#bbb" />'
            '<text x="{lx}" y="{ty}" font-size="11" text-anchor="end" fill="#555">{max}</text>'
            '<text x="{lx}" y="{b}" font-size="11" text-anchor="end" fill="#555">$0</text>',
            l=LEFT,
            r=WIDTH - 8,
            b=TOP + plot_h,
            lx=LEFT - 6,
            ty=TOP + 4,
            max=format_money(top, "USD"),
        ),
        format_html(
            '<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" stroke="#b02a37" stroke-width="2" '
            'stroke-dasharray="6 4"><title>Budget: {v}</title></line>'
            '<text x="{r}" y="{ty}" font-size="11" text-anchor="end" fill="#b02a37">'
            "budget {v}</text>",
            l=LEFT,
            r=WIDTH - 8,
            y=y(budget),
            ty=f"{float(y(budget)) - 4:.1f}",
            v=format_money(budget, "USD"),
        ),
    ]
    if points:
        path = " ".join(f"{x(d.day)},{y(v)}" for d, v in points)
        last_day, last = points[-1]
        body.append(
            format_html(
                '<polyline points="{p}" fill="none" stroke="#3b2a8f" stroke-width="2">'
                "<title>Spent by {d}: {v}</title></polyline>",
                p=path,
                d=last_day.isoformat(),
                v=format_money(last, "USD"),
            )
        )
        if forecast is not None:
            body.append(
                format_html(
                    '<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#3b2a8f" '
                    'stroke-width="2" stroke-dasharray="2 4"><title>Forecast at month end: '
                    "{v}</title></line>",
                    x1=x(last_day.day),
                    y1=y(last),
                    x2=x(days_in_month),
                    y2=y(forecast),
                    v=format_money(forecast, "USD"),
                )
            )
    spent = format_money(points[-1][1], "USD") if points else "$0"
    desc = f"Spent {spent} of a {format_money(budget, 'USD')} budget"
    if forecast is not None:
        desc += f"; forecast at month end {format_money(forecast, 'USD')}"
    n = next(_ids)
    return format_html(
        '<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="100%" '
        'preserveAspectRatio="xMinYMin meet" aria-labelledby="bchart-{n}-title bchart-{n}-desc" '
        'xmlns="http://www.w3.org/2000/svg"><title id="bchart-{n}-title">{title}</title>'
        '<desc id="bchart-{n}-desc">{desc}.</desc>{body}</svg>',
        w=WIDTH,
        h=HEIGHT,
        n=n,
        title=title,
        desc=desc,
        body=mark_safe("".join(body)),  # built from escaped parts above
    )
