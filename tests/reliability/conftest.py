"""The reliability suite: collected only when asked for (``make reliability``, or a path
under tests/reliability on the command line), so ``make test`` stays fast.

``figure(id)`` gives a test its :class:`~tests.reliability.figures.Figure`; the outcome is
written to artifacts/reliability/ when the test ends (see figures.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.figures import SCENARIOS, Figure
from tests.sessions_engine.conftest import (  # noqa: F401 (the fake provider's fixtures)
    cloud,
    new_session,
    pool,
    rate_cards,
)

HERE = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    if os.environ.get("RENSEI_RELIABILITY"):
        return True
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    ours = [item for item in items if HERE in Path(str(item.path)).parents]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if item not in ours]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call" or report.failed:
        item.stash.setdefault(_OUTCOMES, []).append(report.passed)
    return report


_OUTCOMES = pytest.StashKey[list[bool]]()


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Figure]]:
    """figure(id) → the test's Figure; written with pass/FAIL when the test ends."""
    made: list[Figure] = []

    def make(figure_id: str) -> Figure:
        scenario, must_hold = SCENARIOS[figure_id]
        made.append(Figure(id=figure_id, scenario=scenario, must_hold=must_hold))
        return made[-1]

    yield make
    outcomes = request.node.stash.get(_OUTCOMES, [])
    passed = bool(outcomes) and all(outcomes)
    for fig in made:
        fig.write(passed)
