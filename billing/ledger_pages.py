"""Pages of the ledger that cost the same deep in the list as at its start.

``Paginator`` cuts a page with ``OFFSET``: on the ledger, whose rows are shown with six
related objects, the database builds and joins every row it skips, so the last of 6,000
pages took many times as long as the first. ``LedgerPaginator`` reads a page in two queries
(a deferred join):

1. the page's ids, with the list's filters and order and no joins for the related objects
   (``values_list`` drops ``select_related``): an index-only scan of
   ``cost_org_occurred_cover_idx`` that skips ids, not joined rows;
2. those rows with their related objects, by primary key, put back in the page's order.

A page in the back half of the list is read from the other end (the order reversed, the
offset counted from the last row), so the last page costs what the first does.

The count is given, not counted (the ledger's pages take it from the totals they show), and
the list's order must be total (end in a unique column, as the ledger's ``-occurred_at,
-id`` does) for the reversed order to be the exact mirror. Pages are numbered and read as
``Paginator.get_page`` reads them: not a number, the first page; out of range, the last.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page
from django.db.models import QuerySet

from rensei.paging import KnownCountPaginator


class LedgerPaginator(KnownCountPaginator):
    def __init__(self, rows: QuerySet[Any], per_page: int, count: int) -> None:
        super().__init__(count, per_page)
        self.rows = rows

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = min(bottom + self.per_page, self.count)
        return Page(self._rows(bottom, top), number, self)

    def _rows(self, bottom: int, top: int) -> list[Any]:
        if top <= bottom:
            return []  # an empty list's only page: no query
        ids = self.rows.values_list("pk", flat=True)
        if self.count - top < bottom:
            # Nearer the end: the same rows, read from the end of the reversed order.
            wanted = list(ids.reverse()[self.count - top : self.count - bottom])[::-1]
        else:
            wanted = list(ids[bottom:top])
        found = {row.pk: row for row in self.rows.filter(pk__in=wanted).order_by()}
        return [found[pk] for pk in wanted if pk in found]
