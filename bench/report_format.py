"""How docs/performance.md writes a figure, a verdict and a table (``bench.report``)."""

from __future__ import annotations

from typing import Any


def fig(f: dict[str, Any] | None, unit: str | None = None) -> str:
    """'512 ms (300 – 815)': the median, then min – max over the runs."""
    if not f or f.get("median") is None:
        return "n/a"
    u = unit if unit is not None else f.get("unit", "")
    sep = "" if u in ("×", "") else " "
    return f"{f['median']:g}{sep}{u} ({f['min']:g} – {f['max']:g})"


def ok(passed: bool) -> str:
    return "✅ met" if passed else "❌ missed"


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def source(s: dict[str, Any]) -> str:
    commit = f"commit `{s.get('commit', 'unknown')}`"
    changed = s.get("changed_files")
    if changed is None:
        return commit
    return commit + (f" with {changed} tracked files changed" if changed else " (clean)")
