"""A paginator that counts only as far as it needs to: long lists without a COUNT of them all.

Django's ``Paginator`` counts every row the query matches to number the pages. On a list
with a hundred thousand rows that count costs more than the page itself. ``CappedPaginator``
counts at most ``cap`` rows past the start of the requested page (``SELECT count(*) FROM
(… LIMIT n)``, read from the same index the page uses); beyond that the list says "more
than" (``page.paginator.more``), and its last page number is the last one it counted. A
list shorter than that is counted exactly, as before.

    page = CappedPaginator(rows, 25).get_page(request.GET.get("page"))
    {{ page.paginator.count }}{% if page.paginator.more %}+{% endif %}

``KnownCountPaginator`` numbers the pages of a list whose page was cut out elsewhere (ranked
and limited in the database, with the list's length from the same query):

    page = Page(rows, number, KnownCountPaginator(count, 50))
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

CAP = 1000


class CappedPaginator(Paginator):
    def __init__(self, object_list: QuerySet[Any], per_page: int, cap: int = CAP) -> None:
        super().__init__(object_list, per_page)
        self.rows = object_list
        self.cap = cap
        self.more = False
        self._first = 0  # the first row of the page asked for (set by get_page)

    @cached_property
    def count(self) -> int:
        limit = self._first + self.cap
        # Without the order: counting needs no sort, and the LIMIT stops the scan.
        n = self.rows.order_by()[: limit + 1].count()
        self.more = n > limit
        return min(n, limit)

    def get_page(self, number: Any) -> Page:
        try:
            wanted = max(1, int(number))
        except (TypeError, ValueError):
            wanted = 1
        self._first = min(wanted - 1, 10_000_000) * self.per_page
        return super().get_page(number)


class KnownCountPaginator(Paginator):
    """A paginator for a list of ``count`` rows that it never reads: the caller has the
    page's rows already and builds the ``Page`` itself."""

    def __init__(self, count: int, per_page: int) -> None:
        super().__init__((), per_page)
        self.known = count

    @property
    def count(self) -> int:  # type: ignore[override]
        return self.known
