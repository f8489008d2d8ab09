"""Report periods: whole UTC days, from date-range presets or a custom start and end date.

A period covers the usage days ``first_day`` … ``last_day`` inclusive, i.e. ledger rows with
``start < occurred_at <= end`` where start and end are the UTC midnights around those days
(see ``billing.models.usage_day``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

PRESETS: dict[str, str] = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "this-month": "This month",
    "last-month": "Last month",
    "custom": "Custom dates",
}
DEFAULT_PRESET = "30d"
# Custom ranges are capped so a typo (year 2O25 → 0025) cannot ask for millennia of days.
MAX_DAYS = 3 * 366


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def midnight_floor(at: datetime) -> datetime:
    return midnight(at.astimezone(UTC).date())


def midnights_between(after: datetime, upto: datetime) -> list[datetime]:
    """Every UTC midnight m with after < m <= upto, in order."""
    m = midnight_floor(after) + timedelta(days=1)
    found = []
    while m <= upto:
        found.append(m)
        m += timedelta(days=1)
    return found


@dataclass(frozen=True)
class Period:
    first_day: date
    last_day: date  # inclusive
    preset: str

    @property
    def start(self) -> datetime:
        return midnight(self.first_day)

    @property
    def end(self) -> datetime:
        return midnight(self.last_day + timedelta(days=1))

    @property
    def days(self) -> list[date]:
        n = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=i) for i in range(n)]

    @property
    def label(self) -> str:
        span = (
            f"{self.first_day:%Y-%m-%d}"
            if self.first_day == self.last_day
            else f"{self.first_day:%Y-%m-%d} – {self.last_day:%Y-%m-%d}"
        )
        if self.preset == "custom":
            return f"{span} (UTC)"
        return f"{PRESETS[self.preset]}: {span} (UTC)"


def period_for(
    preset: str, today: date, start: date | None = None, end: date | None = None
) -> Period:
    """The period a preset names, relative to ``today`` (UTC). ``custom`` needs start/end."""
    if preset == "today":
        return Period(today, today, preset)
    if preset == "7d":
        return Period(today - timedelta(days=6), today, preset)
    if preset == "30d":
        return Period(today - timedelta(days=29), today, preset)
    if preset == "this-month":
        return Period(today.replace(day=1), today, preset)
    if preset == "last-month":
        last = today.replace(day=1) - timedelta(days=1)
        return Period(last.replace(day=1), last, preset)
    if preset == "custom" and start is not None and end is not None:
        return Period(start, end, preset)
    raise ValueError(f"unknown period {preset!r}")
