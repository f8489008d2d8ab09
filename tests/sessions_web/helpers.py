"""Reading pages in the session web tests."""

from __future__ import annotations

import re
from typing import Any


def text(resp: Any) -> str:
    """The response's visible text, whitespace collapsed."""
    html = resp.content.decode()
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
