"""The embedded broker holds under concurrent producers; kombu's stock one does not.

kombu's filesystem transport creates a message file, then writes it; a consumer that looks
in between reads an empty file and the worker dies with ``JSONDecodeError`` (what stopped
``make run`` after a few minutes of the demo dispatcher). The same load runs against both
transports: ours must come out clean, the stock one's count is only recorded, because the
race is intermittent and a run it happens to survive proves nothing.
"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.broker_stress import StressResult, run_stress

PRODUCERS = 8
MESSAGES = 1000  # per producer


def _details(result: StressResult) -> dict[str, object]:
    return {
        "published": result.published,
        "received": result.received,
        "bad reads (worker deaths)": result.read_errors,
        "publish errors": result.publish_errors,
        "lost": result.missing,
        "duplicated": result.duplicates,
        "errors": result.error_kinds or "none",
        "seconds": round(result.seconds, 1),
    }


def test_atomic_transport_survives_what_breaks_the_stock_one(tmp_path: Path, figure):  # type: ignore[no-untyped-def]
    fig = figure("embedded_broker")
    fig.unit = "messages"
    stock = run_stress("filesystem", tmp_path / "stock", producers=PRODUCERS, messages=MESSAGES)
    ours = run_stress(
        "rensei.broker:Transport", tmp_path / "ours", producers=PRODUCERS, messages=MESSAGES
    )
    fig.add(stock.published + ours.published)
    fig.details["kombu's stock transport: bad reads (a worker death each)"] = stock.read_errors
    fig.details["kombu's stock transport"] = _details(stock)
    fig.details["rensei.broker: bad reads"] = ours.read_errors
    fig.details["rensei.broker"] = _details(ours)

    assert ours.published == PRODUCERS * MESSAGES, ours
    assert ours.read_errors == 0, ours.error_kinds
    assert ours.publish_errors == 0, ours.error_kinds
    assert ours.missing == 0 and ours.duplicates == 0, ours
    # What the temp files and claims leave behind: nothing a later reader could pick up.
    assert not [p.name for p in (tmp_path / "ours" / "queue").iterdir()]


def test_two_consumers_get_each_message_exactly_once(tmp_path: Path, figure):  # type: ignore[no-untyped-def]
    """Two workers on one queue: a consumer claims a message by renaming it, so one wins."""
    fig = figure("embedded_broker_two_consumers")
    fig.unit = "messages"
    ours = run_stress(
        "rensei.broker:Transport", tmp_path, producers=4, messages=MESSAGES, consumers=2
    )
    fig.add(ours.published)
    fig.details["rensei.broker"] = _details(ours)
    assert ours.published == 4 * MESSAGES, ours
    assert ours.read_errors == 0 and ours.publish_errors == 0, ours.error_kinds
    assert ours.missing == 0 and ours.duplicates == 0, ours
