"""The sandbox providers the core knows by name, and the connection test each offers.

``rensei`` sits below ``pools`` (pools build on orgs and credentials), so it cannot ask the
provider registry itself which providers exist. The pools app tells it instead, once, at
start-up (``PoolsConfig.ready`` calls ``connect``): a function listing kind → label, and the
function Test connection calls. Credentials, the Integrations page and the credential admin
read them through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionTest:
    """The answer of Test connection, in words. Holds no secret."""

    ok: bool
    text: str


Catalog = Callable[[], Mapping[str, str]]
Tester = Callable[[str, str], ConnectionTest]  # (kind, secret) → result

# Used when a label is asked for before (or without) the pools app: a deleted provider's
# old credential rows still read well.
FALLBACK_LABELS = {"e2b": "E2B"}


def _none_yet() -> Mapping[str, str]:
    return {}


_catalog: Catalog = _none_yet  # until connect()
_tester: Tester | None = None


def connect(catalog: Catalog, tester: Tester) -> None:
    global _catalog, _tester
    _catalog, _tester = catalog, tester


def kinds() -> list[str]:
    return list(_catalog())


def label(kind: str) -> str:
    return _catalog().get(kind) or FALLBACK_LABELS.get(kind, kind)


def choices() -> list[tuple[str, str]]:
    return list(_catalog().items())


def check_connection(kind: str, secret: str) -> ConnectionTest:
    if _tester is None:
        raise LookupError("no provider registry is connected (is the pools app installed?)")
    return _tester(kind, secret)
