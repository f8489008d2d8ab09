"""The session page's CPU and memory charts: server-rendered SVG lines over a fixed window.

Like the billing charts: no JavaScript, no CDN, an ``<svg role="img">`` labelled by its
``<title>`` and ``<desc>`` (which states the latest figure, so a screen reader hears what a
sighted admin sees). The x axis is a fixed window, the shortest of 5, 15, 30 and 60 minutes
that holds every sample (``window_for``): a box that started two minutes ago fills most of a
5-minute axis rather than a sliver at the right of an hour, and one that ran for 20 minutes
draws on the right of a 30-minute axis, where those minutes are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from pools.providers.base import MetricSample

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 160, 56, 22, 12
_ids = count(1)
# (window, tick step) in minutes, shortest first; samples are asked for over the last one.
WINDOWS = ((5, 1), (15, 5), (30, 10), (60, 15))
LONGEST = timedelta(minutes=WINDOWS[-1][0])


@dataclass(frozen=True)
class Window:
    minutes: int
    step: int

    @property
    def span(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    @property
    def label(self) -> str:
        return "last hour" if self.minutes == 60 else f"last {self.minutes} min"


def window_for(samples: Sequence[MetricSample], end: datetime) -> Window:
    """The shortest window that holds every sample (the longest when none does)."""
    first = min((s.at for s in samples), default=end)
    for minutes, step in WINDOWS:
        if end - first <= timedelta(minutes=minutes):
            return Window(minutes, step)
    return Window(*WINDOWS[-1])


def _n(value: float) -> str:
    return f"{value:.1f}"


def line_chart(
    points: Sequence[tuple[datetime, float]],
    *,
    window: Window,
    end: datetime,
    top: float,
    title: str,
    desc: str,
    unit: str,
) -> SafeString:
    """A polyline of ``points`` (time, value) over ``window`` up to ``end``, 0 to ``top``."""
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    start = end - window.span
    span = max((end - start).total_seconds(), 1.0)
    steps = window.minutes // window.step
    top = top if top > 0 else 1.0

    def xy(at: datetime, value: float) -> str:
        x = LEFT + min(max((at - start).total_seconds() / span, 0.0), 1.0) * plot_w
        y = TOP + plot_h - min(max(value / top, 0.0), 1.0) * plot_h
        return f"{_n(x)},{_n(y)}"

    n = next(_ids)
    line = " ".join(xy(at, v) for at, v in points)
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="11" text-anchor="{}" fill="#555">{}</text>',
        (
            # The last label ends at the edge, so "now" is not cut off.
            (
                _n(LEFT + i / steps * plot_w),
                HEIGHT - 6,
                "middle" if i < steps else "end",
                f"-{window.minutes - i * window.step} min" if i < steps else "now",
            )
            for i in range(steps + 1)
        ),
    )
    return format_html(
        '<svg class="chart box-chart" role="img" viewBox="0 0 {w} {h}" width="100%" '
        'preserveAspectRatio="xMinYMin meet" aria-labelledby="box-{n}-title box-{n}-desc" '
        'xmlns="http://www.w3.org/2000/svg"><title id="box-{n}-title">{title}</title>'
        '<desc id="box-{n}-desc">{desc}</desc>'
        '<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#bbb" />'
        '<line x1="{l}" y1="{t}" x2="{r}" y2="{t}" stroke="#eee" />'
        '<text x="{lx}" y="{ty}" font-size="11" text-anchor="end" fill="#555">{top}</text>'
        '<text x="{lx}" y="{b}" font-size="11" text-anchor="end" fill="#555">0</text>{ticks}'
        '<polyline class="series" points="{line}" fill="none" stroke="#3b2a8f" '
        'stroke-width="2" stroke-linejoin="round" /></svg>',
        w=WIDTH,
        h=HEIGHT,
        n=n,
        title=title,
        desc=desc,
        l=LEFT,
        r=WIDTH - 8,
        b=TOP + plot_h,
        t=TOP,
        lx=LEFT - 6,
        ty=TOP + 4,
        top=f"{top:g}{unit}",
        ticks=ticks,
        line=line,
    )


def cpu_chart(samples: Sequence[MetricSample], end: datetime, window: Window) -> SafeString:
    last = samples[-1] if samples else None
    desc = (
        f"Latest {last.cpu_pct:.1f} % of {last.cpu_count} vCPU at {last.at:%H:%M:%S} UTC; "
        f"{len(samples)} samples."
        if last
        else "No samples yet."
    )
    return line_chart(
        [(s.at, s.cpu_pct) for s in samples],
        window=window,
        end=end,
        top=100.0,
        title=f"CPU use, {window.label} (%)",
        desc=desc,
        unit=" %",
    )


def memory_chart(samples: Sequence[MetricSample], end: datetime, window: Window) -> SafeString:
    last = samples[-1] if samples else None
    total = max((s.mem_total_mb for s in samples), default=0.0)
    desc = (
        f"Latest {last.mem_used_mb:.0f} MB of {last.mem_total_mb:.0f} MB at "
        f"{last.at:%H:%M:%S} UTC; {len(samples)} samples."
        if last
        else "No samples yet."
    )
    return line_chart(
        [(s.at, s.mem_used_mb) for s in samples],
        window=window,
        end=end,
        top=round(total),
        title=f"Memory used, {window.label} (MB)",
        desc=desc,
        unit=" MB",
    )
