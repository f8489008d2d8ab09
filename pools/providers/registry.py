"""The provider registry: kind → (label, lazily imported class). Plain Python, no Django.

Adding a provider is a new module in this package plus one line in ``PROVIDERS``. Model
choices, the "New pool" picker and Settings → Integrations (through ``rensei.providers``,
filled by the pools app at start-up) all come from this dict.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pools.providers.base import Provider

PROVIDERS: dict[str, tuple[str, str]] = {
    "e2b": ("E2B", "pools.providers.e2b.E2BProvider"),
}

# Settings holding each provider's endpoint overrides (empty = the provider's own cloud).
ENDPOINT_SETTINGS: dict[str, tuple[str, str]] = {
    "e2b": ("E2B_API_URL", "E2B_SANDBOX_URL"),
}


def provider_choices() -> list[tuple[str, str]]:
    return [(kind, label) for kind, (label, _) in PROVIDERS.items()]


def provider_labels() -> dict[str, str]:
    return {kind: label for kind, (label, _) in PROVIDERS.items()}


@cache
def provider_class(kind: str) -> type[Provider]:
    try:
        _, dotted = PROVIDERS[kind]
    except KeyError:
        raise LookupError(f"unknown provider {kind!r}") from None
    module, _, name = dotted.rpartition(".")
    # Imported on first use: a provider's SDK is slow to import and most processes never
    # need every provider.
    cls: type[Provider] = getattr(import_module(module), name)
    return cls
