"""Helpers to read the pool pages the way a person does: as text, table by table."""

from __future__ import annotations

import html
import re

CAPACITY = "/settings/execution/capacity/"
NEW = CAPACITY + "new/"
NEW_E2B = NEW + "e2b/"


def detail(pk: int) -> str:
    return f"{CAPACITY}{pk}/"


def text(fragment: str | bytes) -> str:
    """Visible text: tags dropped, entities decoded, whitespace collapsed."""
    if isinstance(fragment, bytes):
        fragment = fragment.decode()
    fragment = re.sub(r"<(script|style)\b.*?</\1>", " ", fragment, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def element(page: str | bytes, testid: str) -> str:
    """The first element carrying ``data-testid="<testid>"`` (outer HTML, best effort)."""
    if isinstance(page, bytes):
        page = page.decode()
    match = re.search(rf'<(\w+)[^>]*data-testid="{re.escape(testid)}"', page)
    assert match, f"no element {testid!r} on the page"
    tag = match.group(1)
    start = match.start()
    depth = 0
    for m in re.finditer(rf"<(/?){tag}\b[^>]*>", page[start:]):
        depth += -1 if m.group(1) else 1
        if depth == 0:
            return page[start : start + m.end()]
    raise AssertionError(f"unclosed {testid!r}")


def table_rows(fragment: str) -> list[list[str]]:
    """Cells (th and td) of each body row, as text."""
    body = re.search(r"<tbody>(.*?)</tbody>", fragment, flags=re.S)
    rows = []
    for row in re.findall(r"<tr\b.*?</tr>", body.group(1) if body else fragment, flags=re.S):
        rows.append([text(cell) for cell in re.findall(r"<t[hd]\b.*?</t[hd]>", row, flags=re.S)])
    return rows
