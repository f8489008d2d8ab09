"""The event types the control plane sends (docs/events.md shows each one's shape)."""

from __future__ import annotations

SESSION_CREATED = "session.created"
SESSION_QUEUED = "session.queued"
SESSION_RUNNING = "session.running"
SESSION_PAUSED = "session.paused"
SESSION_RESUMED = "session.resumed"
SESSION_ENDED = "session.ended"
SESSION_EXEC_FINISHED = "session.exec.finished"
SANDBOX_COST = "sandbox.cost"
BUDGET_THRESHOLD_CROSSED = "budget.threshold_crossed"
BUDGET_ENFORCED = "budget.enforced"
POOL_HEALTH_CHANGED = "pool.health_changed"
# Sent only to the one endpoint whose "Send test event" was pressed; never in the feed.
WEBHOOK_TEST = "webhook.test"

# Every type an endpoint may subscribe to and the feed may filter on, with what it says.
EVENT_TYPES: dict[str, str] = {
    SESSION_CREATED: "a session was created (it starts queued)",
    SESSION_QUEUED: "a session waits for a slot (the reason says why)",
    SESSION_RUNNING: "a session's sandbox is running for the first time",
    SESSION_PAUSED: "a session was paused",
    SESSION_RESUMED: "a paused session runs again",
    SESSION_ENDED: "a session ended, with its outcome",
    SESSION_EXEC_FINISHED: "a command run in a session's sandbox finished",
    SANDBOX_COST: "a cost event was written to the ledger",
    BUDGET_THRESHOLD_CROSSED: "a budget's threshold was crossed",
    BUDGET_ENFORCED: "a budget was enforced",
    POOL_HEALTH_CHANGED: "a pool's health check result changed",
}
ALL_TYPES = frozenset(EVENT_TYPES) | {WEBHOOK_TEST}


class UnknownEventType(ValueError):
    pass


def validate_types(raw: list[str]) -> list[str]:
    """Known subscribable types, deduplicated, in the list's order above."""
    chosen = {str(t) for t in raw}
    unknown = sorted(chosen - set(EVENT_TYPES))
    if unknown:
        raise UnknownEventType(
            f"Unknown event type {unknown[0][:60]!r}. Types are: {', '.join(EVENT_TYPES)}."
        )
    return [t for t in EVENT_TYPES if t in chosen]
