"""Links for a table's rows: one ``reverse`` for the whole table, not one per row."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from django.urls import reverse
from django.utils.http import RFC3986_SUBDELIMS

# What ``reverse`` leaves unquoted in a URL (django.urls.resolvers).
_SAFE = RFC3986_SUBDELIMS + "/~:@"


def url_for_each(name: str, sample: int | str) -> Callable[[int | str], str]:
    """``url(value)``: what ``reverse(name, args=[value])`` gives, for a URL with one
    argument. The URL of ``sample`` (a value that appears nowhere else in it) is split
    around it, and each value is quoted as ``reverse`` quotes it."""
    head, found, tail = reverse(name, args=[sample]).rpartition(str(sample))
    if not found:
        raise ValueError(f"the URL {name!r} does not show its argument as given")
    return lambda value: f"{head}{quote(str(value), safe=_SAFE)}{tail}"
