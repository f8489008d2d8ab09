"""What the benchmarks' ledger loader writes, drawn before any of it is written: sessions with
their issue, pool, sandbox size and closed running intervals (``bench.seed_costs``).

Skew: sessions pick their issue by a Zipf law (a few issues carry most of the cost, ~2% of
sessions have no issue) and the intervals beyond one per session go to sessions with
lognormal weights. One seeded random stream draws everything, so a run is repeatable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate

DAY_MS = 86_400_000
UNATTRIBUTED_SHARE = 0.02
ZIPF_EXPONENT = 1.1
# (template, vCPU, memory MiB, weight): what sandboxes the seeded sessions ran in.
SIZES = [("donmai-worker", 2, 1024, 70), ("base", 2, 512, 20), ("donmai-large", 8, 8192, 10)]
RUNNING_MEDIAN_MS = 10 * 60_000  # running stretches: lognormal around 10 minutes
PAUSE_MEAN_MS = 30 * 60_000  # paused gaps: exponential, 30 minutes on average


class SeedError(Exception):
    """Numbers or a database the loader cannot seed with; nothing has been written."""


@dataclass
class Plan:
    """One session to write: who it belongs to and its closed intervals (epoch ms)."""

    issue_id: int | None
    pool_id: int
    template: str
    vcpu: int
    memory_mb: int
    intervals: list[tuple[int, int]]


def ms_of(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def dt_of(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def layout(
    start: int, count: int, runs: Sequence[int], gaps: Sequence[int]
) -> list[tuple[int, int]]:
    """``count`` intervals from ``start``: run, pause, run… A run crossing a UTC midnight is
    closed there and reopened at the same instant, as the daily accrual does; that piece
    counts as an interval of its own, so exactly ``count`` come back."""
    out: list[tuple[int, int]] = []
    cur, carry, i = start, 0, 0
    while len(out) < count:
        if carry:
            length, carry = carry, 0
        else:
            if out:
                cur += gaps[i - 1]
            length = runs[i]
            i += 1
        end = cur + length
        midnight = (cur // DAY_MS + 1) * DAY_MS
        if end > midnight:
            carry, end = end - midnight, midnight
        out.append((cur, end))
        cur = end
    return out


class Generator:
    """Draws the sessions (issue, pool, size, intervals) from one seeded random stream."""

    def __init__(
        self,
        rng: random.Random,
        *,
        issue_ids: list[int],
        pool_ids: list[int],
        sessions: int,
        events: int,
        window: tuple[int, int],
    ) -> None:
        self.rng = rng
        self.window = window
        self.pool_ids = pool_ids
        # Zipf over issues, in a shuffled order so the expensive ones are not simply 1, 2, 3.
        ranked = list(issue_ids)
        rng.shuffle(ranked)
        self.issues = ranked
        self.issue_cum = list(accumulate(1 / (r**ZIPF_EXPONENT) for r in range(1, len(ranked) + 1)))
        self.size_cum = list(accumulate(w for *_, w in SIZES))
        # Every session has one interval; the rest go by lognormal weight.
        counts = [1] * sessions
        weights = list(accumulate(rng.lognormvariate(0, 1) for _ in range(sessions)))
        for index in rng.choices(range(sessions), cum_weights=weights, k=events - sessions):
            counts[index] += 1
        self.counts = counts

    def _issue(self) -> int | None:
        if not self.issues or self.rng.random() < UNATTRIBUTED_SHARE:
            return None
        return self.rng.choices(self.issues, cum_weights=self.issue_cum)[0]

    def plans(self, first: int, last: int) -> Iterator[Plan]:
        rng = self.rng
        begin, finish = self.window
        span_max = finish - begin
        for n in self.counts[first:last]:
            runs = [
                max(1000, int(rng.lognormvariate(math.log(RUNNING_MEDIAN_MS), 1.2)))
                for _ in range(n)
            ]
            gaps = [max(1000, int(rng.expovariate(1 / PAUSE_MEAN_MS))) for _ in range(n - 1)]
            total = sum(runs) + sum(gaps)
            if total > span_max:  # a very busy session: squeeze it into the window
                factor = span_max * 0.95 / total
                runs = [max(1000, int(r * factor)) for r in runs]
                gaps = [max(1000, int(g * factor)) for g in gaps]
                total = sum(runs) + sum(gaps)
                if total > span_max:
                    raise SeedError("Too many events per session for --days; add days.")
            start = rng.randint(begin, max(begin, finish - total))
            template, vcpu, memory, _ = rng.choices(SIZES, cum_weights=self.size_cum)[0]
            yield Plan(
                issue_id=self._issue(),
                pool_id=rng.choice(self.pool_ids),
                template=template,
                vcpu=vcpu,
                memory_mb=memory,
                intervals=layout(start, n, runs, gaps),
            )
