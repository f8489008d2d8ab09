"""Listing a team's sandboxes page by page, as E2B pages them: every sandbox exactly once,
newest first (or oldest first with ``order=asc``), ties on ``startedAt`` broken by id, and a
start on a whole second (no fraction in its timestamp) in its right place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from e2b import Sandbox, SandboxQuery

from pools.e2b_emulator.testing import RunningEmulator


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_every_page_in_order_and_each_sandbox_once(
    e2b_emulator: RunningEmulator, order: Literal["asc", "desc"]
) -> None:
    made = [Sandbox.create("base", timeout=60, metadata={"batch": "pages"}) for _ in range(7)]
    whole = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    starts = [whole, whole, whole + timedelta(microseconds=1), whole - timedelta(seconds=1)]
    starts += [whole + timedelta(seconds=s) for s in (1, 2, 3)]
    for sandbox, started in zip(made, starts, strict=True):
        e2b_emulator.emulator.sandboxes[sandbox.sandbox_id].started_at = started

    pages = Sandbox.list(query=SandboxQuery(metadata={"batch": "pages"}), limit=2, order=order)
    seen: list[str] = []
    while pages.has_next:
        seen += [s.sandbox_id for s in pages.next_items()]

    by_start = sorted(
        (started, sandbox.sandbox_id) for sandbox, started in zip(made, starts, strict=True)
    )
    expected = [sandbox_id for _, sandbox_id in by_start]
    assert seen == (expected[::-1] if order == "desc" else expected)
    assert len(e2b_emulator.emulator.calls_to("list")) == 4  # 2 + 2 + 2 + 1
