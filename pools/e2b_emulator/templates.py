"""Sandbox templates known to the emulator, and the stand-in ``donmai`` executable.

A real E2B template is a built VM image; here it is only a size (vCPU, memory, disk)
plus, for worker templates, a directory with a fake ``donmai`` binary put first on PATH.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DONMAI_VERSION = "0.11.0"

# The default PATH envd gives processes in E2B's stock images.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Template:
    """A template: its id (also its alias), its resources and whether ``donmai`` is baked in."""

    template_id: str
    cpu_count: int
    memory_mb: int
    disk_size_mb: int = 10240
    donmai: bool = False


DEFAULT_TEMPLATES: tuple[Template, ...] = (
    Template("base", cpu_count=2, memory_mb=512),
    Template("donmai-worker", cpu_count=2, memory_mb=1024, donmai=True),
)


def parse_template_spec(spec: str) -> Template:
    """Parse ``id:vcpu:memory_mb[:donmai]`` (the CLI's ``--template`` value)."""
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not parts[0]:
        raise ValueError(f"template spec {spec!r} is not id:vcpu:memory_mb[:donmai]")
    if len(parts) == 4 and parts[3] != "donmai":
        raise ValueError(f"template spec {spec!r}: the optional 4th field must be 'donmai'")
    try:
        cpu, memory = int(parts[1]), int(parts[2])
    except ValueError as exc:
        raise ValueError(f"template spec {spec!r}: vcpu and memory_mb must be integers") from exc
    if cpu <= 0 or memory <= 0:
        raise ValueError(f"template spec {spec!r}: vcpu and memory_mb must be positive")
    return Template(parts[0], cpu_count=cpu, memory_mb=memory, donmai=len(parts) == 4)


def build_registry(extra: Iterable[Template | str] = ()) -> dict[str, Template]:
    """The default templates plus ``extra`` ones (specs or objects; later ids win)."""
    registry = {t.template_id: t for t in DEFAULT_TEMPLATES}
    for item in extra:
        template = parse_template_spec(item) if isinstance(item, str) else item
        registry[template.template_id] = template
    return registry


# A POSIX sh script so it runs wherever /bin/sh exists. `agent run` stays in the
# foreground and prints a heartbeat, which is what the platform's launcher expects
# (it starts it with nohup and later checks it with `pgrep -f "donmai agent run"`).
_DONMAI_SCRIPT = """#!/bin/sh
# Stand-in for the donmai runner, written by the local E2B emulator.
# It is not the real donmai: it only answers --version and fakes `agent run`.
case "$1" in
  --version|version)
    echo "donmai {version} (local emulator stand-in)"
    ;;
  agent)
    if [ "$2" != "run" ]; then
      echo "donmai stand-in: only 'agent run' is emulated" >&2
      exit 2
    fi
    echo "donmai agent (local emulator stand-in) started, pid $$"
    while :; do
      echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) heartbeat"
      sleep 2
    done
    ;;
  *)
    echo "usage: donmai --version | donmai agent run" >&2
    exit 2
    ;;
esac
"""


def write_donmai_stub(bin_dir: Path) -> Path:
    """Write the executable ``donmai`` stand-in into ``bin_dir`` and return its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "donmai"
    path.write_text(_DONMAI_SCRIPT.format(version=DONMAI_VERSION))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def template_path(template: Template, bin_dir: Path) -> str:
    """The PATH a process of this template starts with."""
    if template.donmai:
        return f"{bin_dir}{os.pathsep}{BASE_PATH}"
    return BASE_PATH
