"""What the capacity views share: the request type, the access rule, a pool as the audit log
records it, and why a pool may not be deleted.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from pools import config as schema
from pools.models import CapacityPool
from rensei.access import org_view as _org_view


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def capacity_view(view: Any) -> Any:
    """GET needs capacity.view; anything else needs capacity.manage (checked in the body)."""
    return _org_view("capacity.view")(view)


def can_manage(request: HtmxHttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return bool(membership and membership.can("capacity.manage"))


def config_dict(config: Any) -> dict[str, Any]:
    out = schema.masked(config)
    return out if isinstance(out, dict) else {}


def pool_snapshot(pool: CapacityPool) -> dict[str, Any]:
    return {
        "name": pool.name,
        "config": config_dict(pool.config),
        "runtime_provides": list(pool.runtime_provides or []),
        "order": pool.order,
        "concurrency_cap": pool.concurrency_cap,
        "enabled": pool.enabled,
    }


def delete_refusal(pool: CapacityPool) -> str:
    live = getattr(pool, "live_count", 0)
    total = getattr(pool, "session_count", 0)
    if live:
        return (
            f"Pool {pool.name} has {live} live session{'s' if live != 1 else ''}, so it cannot "
            "be deleted. Disable it instead: dispatch stops using it and the sessions finish."
        )
    # Sessions and ledger rows keep pointing at their pool (the ledger is append-only).
    if total or pool.cost_events.exists():  # type: ignore[attr-defined]
        return (
            f"Pool {pool.name} has session history and cost records that refer to it, so it "
            "cannot be deleted. Disable it instead."
        )
    return ""
