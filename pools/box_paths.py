"""Which paths inside a sandbox the session page may show: one rule, used by every view.

A path is the sandbox's home (``/home/user`` at E2B and in the emulator) or below it; the
runner's log is allowed by name as well. ``..`` is refused outright rather than resolved:
what a path names is decided inside the box (symlinks), so the rule only accepts paths that
say plainly where they are. Relative paths are taken from the home.
"""

from __future__ import annotations

import posixpath

from rensei.inputs import InputError

HOME = "/home/user"
RUNNER_LOG = "/tmp/donmai-runner.log"
MAX_PATH = 1024
VIEW_LIMIT = 1024 * 1024  # a text file shown on the page
DOWNLOAD_LIMIT = 10 * 1024 * 1024  # a file offered as a download


def box_path(value: object, *, allowed_files: tuple[str, ...] = (RUNNER_LOG,)) -> str:
    """The normalised absolute path, or ``InputError`` saying why it may not be shown."""
    if not isinstance(value, str) or not value.strip():
        return HOME
    text = value.strip()
    if len(text) > MAX_PATH:
        raise InputError(f"A path is at most {MAX_PATH} characters.")
    if "\x00" in text or any(ord(c) < 32 for c in text):
        raise InputError("A path may not contain control characters.")
    if ".." in text.split("/"):
        raise InputError("A path may not contain '..'.")
    path = posixpath.normpath(text if text.startswith("/") else posixpath.join(HOME, text))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if path in allowed_files or path == HOME or path.startswith(HOME + "/"):
        return path
    raise InputError(
        f"Only files under {HOME} can be browsed (and the runner's log, {RUNNER_LOG})."
    )


def parent_of(path: str) -> str | None:
    """The directory above ``path`` when it can be browsed too, else None."""
    if path == HOME or not path.startswith(HOME + "/"):
        return None
    return posixpath.dirname(path)


def looks_binary(data: bytes) -> bool:
    """NUL bytes or not UTF-8: offered as a download, never shown."""
    if b"\x00" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the read limit is still text.
        return exc.start < len(data) - 3
    return False
