"""The one provider factory: jobs, health checks, the reconciler and Test connection all get
their provider here, bound to a credential, the server's endpoint settings and a call bound.

``for_pool(pool)`` / ``for_org(org, kind)`` resolve the org's credential (or the server's
fallback key); ``build(kind, secret)`` takes a credential already resolved (Test connection
resolves it itself, to say which key it tested). The registry itself is
``pools.providers.registry`` (re-exported here); the provider modules of this package never
import this one, so they stay free of Django and models (import-linter checks it).

Call bound: ``timeout`` (seconds) bounds every provider call the instance makes. Without
one, ``call_timeout()`` gives the bound of the code around it (management commands use it
so a stalled provider cannot hang them), else the provider SDK's own default applies
(jobs: they run in the worker, where a slow answer holds no one up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from pools.providers.base import ProviderError
from pools.providers.registry import (
    ENDPOINT_SETTINGS,
    PROVIDERS,
    provider_choices,
    provider_class,
    provider_labels,
)
from rensei.credentials import MissingCredential, ResolvedCredential, resolve_credential

if TYPE_CHECKING:
    from pools.models import CapacityPool
    from pools.providers.base import Provider
    from rensei.models import Organization

__all__ = [
    "ENDPOINT_SETTINGS",
    "PROVIDERS",
    "build",
    "call_timeout",
    "for_org",
    "for_pool",
    "provider_choices",
    "provider_class",
    "provider_labels",
]

_call_timeout: ContextVar[float | None] = ContextVar("provider_call_timeout", default=None)


@contextmanager
def call_timeout(seconds: float | None) -> Iterator[None]:
    """Providers built inside this block (without a ``timeout`` of their own) give up on
    any call after ``seconds``."""
    token = _call_timeout.set(seconds)
    try:
        yield
    finally:
        _call_timeout.reset(token)


@sensitive_variables("secret")
def build(kind: str, secret: str, *, timeout: float | None = None) -> Provider:
    """A ``kind`` provider bound to ``secret`` and the server's endpoint settings.

    ``LookupError`` for an unknown kind.
    """
    cls = provider_class(kind)
    api_setting, sandbox_setting = ENDPOINT_SETTINGS.get(kind, ("", ""))
    return cls(
        secret,
        api_url=str(getattr(settings, api_setting, "") or "") if api_setting else "",
        sandbox_url=str(getattr(settings, sandbox_setting, "") or "") if sandbox_setting else "",
        timeout=timeout if timeout is not None else _call_timeout.get(),
    )


@sensitive_variables("secret")
def for_org(
    org: Organization,
    kind: str = "e2b",
    *,
    timeout: float | None = None,
    credential: Callable[[], ResolvedCredential] | None = None,
) -> Provider:
    """A provider bound to the org's credential (or the server's fallback key).

    ``credential`` resolves it from what the caller already read (``with_credential``)
    instead of a query of its own. Raises ``ProviderError(permanent=True)`` when there is
    no credential at all, with the message that says where to add one; ``LookupError`` for
    an unknown kind.
    """
    secret = ""
    if provider_class(kind).requires_credential:
        try:
            secret = (credential() if credential else resolve_credential(org, kind)).secret
        except MissingCredential as exc:
            raise ProviderError(str(exc), permanent=True) from None
    return build(kind, secret, timeout=timeout)


def for_pool(
    pool: CapacityPool,
    *,
    timeout: float | None = None,
    credential: Callable[[], ResolvedCredential] | None = None,
) -> Provider:
    """The provider of ``pool``, bound to its org's credential (see ``for_org``)."""
    return for_org(pool.org, pool.provider, timeout=timeout, credential=credential)
