"""A command's output as the exec console keeps it: the head and the tail, capped.

Errors are printed last, so a cap that kept only the beginning would drop what the admin
came for. ``CappedOutput`` keeps the first ``HEAD_BYTES`` and a rolling last ``TAIL_BYTES``
of UTF-8 while the output streams in, so memory stays bounded however much a command
prints, and renders them with a marker naming what was left out between. The same text is
written while the command runs and when it ends.
"""

from __future__ import annotations

HEAD_BYTES = 32 * 1024
TAIL_BYTES = 32 * 1024


def omitted_marker(count: int) -> str:
    return f"\n… {count:,} bytes omitted …\n"


class CappedOutput:
    """One stream's output: append pieces with ``add``, read the capped text with ``text``."""

    def __init__(self, head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES) -> None:
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self._head = bytearray()
        self._tail = bytearray()
        self.total_bytes = 0

    def add(self, text: str) -> None:
        # NULs dropped: PostgreSQL text columns cannot hold them.
        data = text.replace("\x00", "").encode("utf-8", errors="replace")
        self.total_bytes += len(data)
        room = self.head_bytes - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        self._tail += data
        # Trim in batches, not on every piece: a chatty command sends many small ones.
        if len(self._tail) > 2 * self.tail_bytes:
            del self._tail[: -self.tail_bytes]

    @property
    def omitted_bytes(self) -> int:
        return max(0, self.total_bytes - len(self._head) - self.tail_bytes)

    @property
    def truncated(self) -> bool:
        return self.omitted_bytes > 0

    def text(self) -> str:
        omitted = self.omitted_bytes
        if not omitted:
            return bytes(self._head + self._tail).decode("utf-8", errors="replace")
        # Cut points may fall inside a character: "ignore" drops its stray bytes.
        head = bytes(self._head).decode("utf-8", errors="ignore")
        tail = bytes(self._tail[-self.tail_bytes :]).decode("utf-8", errors="ignore")
        return head + omitted_marker(omitted) + tail


def cap_output(text: str) -> tuple[str, bool]:
    """``text`` capped as a streamed output would be: (kept text, whether anything was cut)."""
    output = CappedOutput()
    output.add(text or "")
    return output.text(), output.truncated
