"""Substrate kinds: defaults, the override, and what dispatch asks (covers)."""

from __future__ import annotations

import pytest

from pools.kinds import covers, effective_provides, known_kinds, parse_provides
from pools.models import CapacityPool

E2B_DEFAULTS = {
    "npm",
    "python-pip",
    "http",
    "mcp-server",
    "a2a-protocol",
    "long-running",
    "network-egress",
    "git",
    "full-history-clone",
}


def pool(provides: list[str] | None = None, provider: str = "e2b") -> CapacityPool:
    return CapacityPool(name="p", provider=provider, runtime_provides=provides or [])


def test_defaults_are_the_e2b_substrate() -> None:
    assert effective_provides(pool()) == E2B_DEFAULTS
    assert known_kinds() == E2B_DEFAULTS


def test_override_adds_toolchains() -> None:
    assert effective_provides(pool(["toolchain:go"])) == E2B_DEFAULTS | {"toolchain:go"}


def test_covers() -> None:
    assert covers(pool(), ["npm", "http"], ["git", "long-running"]) == (True, [])
    assert covers(pool(), [], []) == (True, [])
    ok, missing = covers(pool(), ["npm", "toolchain:go"], ["git", "gpu"])
    assert not ok and missing == ["toolchain:go", "gpu"]
    assert covers(pool(["toolchain:go"]), ["toolchain:go"], ["git"]) == (True, [])


def test_unknown_provider_provides_only_its_override() -> None:
    assert effective_provides(pool(["toolchain:go"], provider="gone")) == {"toolchain:go"}


def test_parse_provides() -> None:
    assert parse_provides("toolchain:go, npm  toolchain:Node,npm") == [
        "npm",
        "toolchain:go",
        "toolchain:node",
    ]
    assert parse_provides("") == []
    assert parse_provides(["git", "toolchain:rust"]) == ["git", "toolchain:rust"]
    for bad in ("gpu", "toolchain:", "toolchain:go lang!", "toolchain:" + "x" * 41):
        with pytest.raises(ValueError, match="Unknown kind"):
            parse_provides(bad)
    with pytest.raises(ValueError, match="Unknown kind: 3"):
        parse_provides([3])  # type: ignore[list-item]


def test_fake_provider_kinds(fake_cloud) -> None:  # type: ignore[no-untyped-def]
    assert effective_provides(pool(provider="fake")) == E2B_DEFAULTS
