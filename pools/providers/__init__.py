"""The provider registry: kind → (label, lazily imported class).

Adding a provider is a new module here plus one line in ``PROVIDERS``. Model choices and
the "New pool" picker come from the same dict.
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


def provider_choices() -> list[tuple[str, str]]:
    return [(kind, label) for kind, (label, _) in PROVIDERS.items()]


@cache
def provider_class(kind: str) -> type[Provider]:
    try:
        _, dotted = PROVIDERS[kind]
    except KeyError:
        raise LookupError(f"unknown provider {kind!r}") from None
    module, _, name = dotted.rpartition(".")
    cls: type[Provider] = getattr(import_module(module), name)
    return cls
