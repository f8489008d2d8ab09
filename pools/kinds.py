"""Substrate kinds: what a pool provides, and whether it covers what a session asks for.

A provider class declares default runtime kinds (``npm``, ``http``, ...) and requirement
kinds (``long-running``, ``git``, ...). A pool adds kinds through its runtime provides
override, e.g. ``toolchain:go`` for a custom template that bakes Go in. Dispatch (sessions)
calls :func:`covers` for each enabled pool; the pool pages show :func:`effective_provides`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pools.providers import PROVIDERS, provider_class
from rensei.inputs import InputError, rule

if TYPE_CHECKING:
    from pools.models import CapacityPool

TOOLCHAIN_RE = re.compile(r"toolchain:[a-z0-9][a-z0-9._+-]{0,39}")
MAX_OVERRIDE = 50


def default_kinds(provider: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(runtime kinds, requirement kinds) a provider's pools provide without an override."""
    try:
        cls = provider_class(provider)
    except LookupError:
        return (), ()
    return tuple(cls.runtime_kinds), tuple(cls.requirement_kinds)


def known_kinds() -> set[str]:
    """Every kind some registered provider declares (the override accepts these too)."""
    out: set[str] = set()
    for kind in PROVIDERS:
        runtime, requirement = default_kinds(kind)
        out.update(runtime, requirement)
    return out


def parse_provides(text: str | Iterable[str]) -> list[str]:
    """Parse an override (comma/space separated text or a list) into sorted unique kinds.

    Raises ``InputError`` (a ``ValueError``) with a message naming each unknown kind: the
    one kinds rule, used by the pool form, the admin, the New session form, the API schemas
    and the services.
    """
    items = re.split(r"[\s,]+", text) if isinstance(text, str) else list(text)
    known = known_kinds()
    out: list[str] = []
    bad: list[str] = []
    for item in items:
        if not isinstance(item, str):
            bad.append(repr(item))
            continue
        kind = item.strip().lower()
        if not kind:
            continue
        if kind in known or TOOLCHAIN_RE.fullmatch(kind):
            if kind not in out:
                out.append(kind)
        else:
            bad.append(item.strip()[:60])
    if bad:
        toolchains = [b for b in bad if b.lower().startswith("toolchain:")]
        raise InputError(
            f"Unknown kind{'s' if len(bad) > 1 else ''}: {', '.join(bad)}. Use "
            f"{', '.join(sorted(known))} or toolchain:<name> (e.g. toolchain:go)."
            + (
                f" “{toolchains[0]}” is not a toolchain kind: a name is 1 to 40 lower-case "
                "letters, digits and . _ + -."
                if toolchains
                else ""
            )
        )
    if len(out) > MAX_OVERRIDE:
        raise InputError(f"At most {MAX_OVERRIDE} kinds.")
    return sorted(out)


# The kinds rule as a Pydantic validator, and the JSON Schema of one kind (for the API).
kinds_rule = rule(parse_provides)


def kind_json_schema(schema: dict[str, Any]) -> None:
    schema["items"] = {
        "anyOf": [
            {"type": "string", "enum": sorted(known_kinds())},
            {"type": "string", "pattern": f"^{TOOLCHAIN_RE.pattern}$"},
        ]
    }


def effective_provides(pool: CapacityPool) -> set[str]:
    """The provider's default runtime and requirement kinds plus the pool's override."""
    runtime, requirement = default_kinds(pool.provider)
    extra = pool.runtime_provides if isinstance(pool.runtime_provides, list) else []
    return set(runtime) | set(requirement) | {k for k in extra if isinstance(k, str)}


def covers(
    pool: CapacityPool, runtime_kinds: Iterable[str], requirement_kinds: Iterable[str]
) -> tuple[bool, list[str]]:
    """(True, []) when the pool provides every requested kind, else (False, missing kinds)."""
    provides = effective_provides(pool)
    wanted = list(dict.fromkeys([*runtime_kinds, *requirement_kinds]))
    missing = [kind for kind in wanted if kind not in provides]
    return (not missing, missing)
