"""The provider registry: kind → (label, lazily imported class), and the factories jobs use.

Adding a provider is a new module here plus one line in ``PROVIDERS``. Model choices and
the "New pool" picker come from the same dict. Jobs never build a provider by hand: they
call ``for_pool(pool)`` (or ``for_org(org)``), which resolves the org's credential and the
server's endpoint settings.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

from django.views.decorators.debug import sensitive_variables

if TYPE_CHECKING:
    from pools.models import CapacityPool
    from pools.providers.base import Provider
    from rensei.models import Organization

PROVIDERS: dict[str, tuple[str, str]] = {
    "e2b": ("E2B", "pools.providers.e2b.E2BProvider"),
}

# Settings holding each provider's endpoint overrides (empty = the provider's own cloud).
ENDPOINT_SETTINGS: dict[str, tuple[str, str]] = {
    "e2b": ("E2B_API_URL", "E2B_SANDBOX_URL"),
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


@sensitive_variables("secret")
def for_org(org: Organization, kind: str = "e2b") -> Provider:
    """A provider bound to the org's credential (or the server's fallback key).

    Raises ``ProviderError(permanent=True)`` when there is no credential at all, with the
    message that says where to add one; ``LookupError`` for an unknown kind.
    """
    from django.conf import settings

    from pools.providers.base import ProviderError
    from rensei.credentials import MissingCredential, resolve_credential

    cls = provider_class(kind)
    secret = ""
    if cls.requires_credential:
        try:
            secret = resolve_credential(org, kind).secret
        except MissingCredential as exc:
            raise ProviderError(str(exc), permanent=True) from None
    api_setting, sandbox_setting = ENDPOINT_SETTINGS.get(kind, ("", ""))
    return cls(
        secret,
        api_url=str(getattr(settings, api_setting, "") or "") if api_setting else "",
        sandbox_url=str(getattr(settings, sandbox_setting, "") or "") if sandbox_setting else "",
    )


def for_pool(pool: CapacityPool) -> Provider:
    """The provider of ``pool``, bound to its org's credential (see ``for_org``)."""
    return for_org(pool.org, pool.provider)
