"""Server-rendered SVG charts: no JavaScript, no CDN, readable by screen readers.

Each chart is an ``<svg role="img">`` labelled by its ``<title>`` and ``<desc>``; every bar
carries its own ``<title>`` (a tooltip and an accessible name) with the exact figure. Money is
Decimal everywhere else; floats appear here only to place pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import count

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

_ids = count(1)


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal
    href: str = ""


def _n(value: float) -> str:
    return f"{value:.1f}"


def _scale(bars: Sequence[Bar]) -> float:
    top = max((float(b.value) for b in bars), default=0.0)
    return top if top > 0 else 1.0


def _frame(
    title: str, desc: str, width: int, height: int, body: list[str], role: str = "img"
) -> SafeString:
    n = next(_ids)
    return format_html(
        '<svg class="chart" role="{role}" viewBox="0 0 {w} {h}" width="100%" '
        'preserveAspectRatio="xMinYMin meet" aria-labelledby="chart-{n}-title chart-{n}-desc" '
        'xmlns="http://www.w3.org/2000/svg"><title id="chart-{n}-title">{title}</title>'
        '<desc id="chart-{n}-desc">{desc}</desc>{body}</svg>',
        role=role,
        w=width,
        h=height,
        n=n,
        title=title,
        desc=desc,
        body=mark_safe("".join(body)),  # built from escaped parts below
    )


def horizontal_bars(
    bars: Sequence[Bar], *, title: str, desc: str, fmt: Callable[[Decimal], str]
) -> SafeString:
    """One row per bar, label on the left, value at the end of the bar (top issues)."""
    row_h, label_w, bar_w, value_w = 26, 170, 420, 110
    width = label_w + bar_w + value_w
    height = max(row_h * len(bars), row_h)
    top = _scale(bars)
    body: list[str] = []
    for i, bar in enumerate(bars):
        y = i * row_h
        w = max(float(bar.value), 0.0) / top * bar_w
        label = bar.label if len(bar.label) <= 24 else bar.label[:23] + "…"
        text = format_html(
            '<text x="{x}" y="{y}" font-size="12" text-anchor="end" fill="#333">{label}</text>',
            x=label_w - 8,
            y=y + 17,
            label=label,
        )
        if bar.href:
            text = format_html('<a href="{}">{}</a>', bar.href, text)
        body.append(
            format_html(
                '<g>{text}<rect x="{x}" y="{y}" width="{w}" height="18" rx="2" '
                'fill="#3b2a8f"><title>{label}: {value}</title></rect>'
                '<text x="{vx}" y="{ty}" font-size="12" fill="#333">{value}</text></g>',
                text=text,
                x=label_w,
                y=y + 4,
                w=_n(w),
                label=bar.label,
                value=fmt(bar.value),
                vx=_n(label_w + w + 6),
                ty=y + 17,
            )
        )
    # An image's content is hidden from assistive technology, links included: a chart whose
    # bars link somewhere is a group, so those links can be reached and followed.
    role = "group" if any(bar.href for bar in bars) else "img"
    return _frame(title, desc, width, height, body, role=role)


def columns(
    bars: Sequence[Bar], *, title: str, desc: str, fmt: Callable[[Decimal], str]
) -> SafeString:
    """Vertical columns in order (cost per day), with the axis maximum written at the top."""
    width, height, left, bottom, top_pad = 720, 200, 70, 24, 14
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    top = _scale(bars)
    n = max(len(bars), 1)
    slot = plot_w / n
    body: list[str] = [
        format_html(
            '<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" stroke="#bbb" />'
            '<line x1="{l}" y1="{t}" x2="{r}" y2="{t}" stroke="#eee" />'
            '<text x="{lx}" y="{ty}" font-size="11" text-anchor="end" fill="#555">{max}</text>'
            '<text x="{lx}" y="{y}" font-size="11" text-anchor="end" fill="#555">{zero}</text>',
            l=left,
            r=width - 8,
            y=top_pad + plot_h,
            t=top_pad,
            lx=left - 6,
            ty=top_pad + 4,
            max=fmt(max((b.value for b in bars), default=Decimal(0))),
            zero=fmt(Decimal(0)),
        )
    ]
    every = max(1, n // 8)  # at most ~8 date labels
    for i, bar in enumerate(bars):
        h = max(float(bar.value), 0.0) / top * plot_h
        x = left + i * slot
        body.append(
            format_html(
                '<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="#3b2a8f">'
                "<title>{label}: {value}</title></rect>",
                x=_n(x + slot * 0.1),
                y=_n(top_pad + plot_h - h),
                w=_n(max(slot * 0.8, 1.0)),
                h=_n(h),
                label=bar.label,
                value=fmt(bar.value),
            )
        )
        if i % every == 0:
            body.append(
                format_html(
                    '<text x="{x}" y="{y}" font-size="10" text-anchor="middle" '
                    'fill="#555">{label}</text>',
                    x=_n(x + slot / 2),
                    y=height - 8,
                    label=bar.label[5:] if len(bar.label) == 10 else bar.label,
                )
            )
    return _frame(title, desc, width, height, body)
