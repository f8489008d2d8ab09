"""Every column that holds values encrypted with the key ring, for ``rotate_credentials``.

The core knows its own (provider keys); each app registers its columns in its ``ready()``
(webhook signing secrets, session and command env values, pool env values), since the core
sits below them. A column is either one Fernet token per row (``TOKEN``) or a JSON object of
name → token (``TOKEN_MAP``); a column whose tokens sit inside a larger value (a pool's
config) subclasses ``SealedColumn`` and says how to read and write them.

Writes are conditional on the value read, so a row changed meanwhile (a key replaced, a
session ended and its env cleared) is left as the change made it: already under a ring key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from django.db import models

from rensei import crypto

Shape = Literal["token", "token_map"]
TOKEN: Final = "token"
TOKEN_MAP: Final = "token_map"


@dataclass(frozen=True)
class SealedColumn:
    label: str  # plural, for messages: "webhook signing secrets"
    model: type[models.Model]
    field: str
    shape: Shape = TOKEN
    # How an unreadable row is named in the error (default: "<model> #<pk>"); never a value.
    describe: Callable[[Any], str] | None = None

    def rows(self) -> Iterator[tuple[Any, Any]]:
        """(pk, stored value) of every row that holds something encrypted."""
        empty: Any = "" if self.shape == TOKEN else {}
        query = self.model._default_manager.exclude(**{self.field: empty})
        if self.shape == TOKEN:
            query = query.exclude(**{f"{self.field}__isnull": True})
        yield from query.values_list("pk", self.field).iterator(chunk_size=2000)

    def rotated(self, stored: Any) -> Any:
        """The same value under the first key of the ring; ``DecryptionError`` if it cannot."""
        if self.shape == TOKEN:
            return crypto.rotate(stored)
        return {name: crypto.rotate(token) for name, token in stored.items()}

    def write(self, pk: Any, old: Any, new: Any) -> int:
        manager = self.model._default_manager
        return manager.filter(pk=pk, **{self.field: old}).update(**{self.field: new})

    def name(self, pk: Any) -> str:
        if self.describe is not None:
            return self.describe(self.model._default_manager.get(pk=pk))
        return f"{self.model._meta.verbose_name} #{pk}"


_COLUMNS: list[SealedColumn] = []


def register(column: SealedColumn) -> None:
    if all((c.model, c.field) != (column.model, column.field) for c in _COLUMNS):
        _COLUMNS.append(column)


def columns() -> list[SealedColumn]:
    return list(_COLUMNS)
