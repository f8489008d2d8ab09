"""A pool's env values for ``rotate_credentials``: tokens inside the config column.

The column's field decrypts on load, so the tokens are read as stored through a key
transform, and written back as the stored form (``envVarsEncrypted`` only, which the field
saves as it is) under a row lock, if they are still the ones read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import transaction
from django.db.models.fields.json import KeyTransform

from pools.config import ENCRYPTED_ENV_KEY
from pools.models import CapacityPool
from rensei.sealed import TOKEN_MAP, SealedColumn


def _stored_tokens(query: Any) -> Any:
    return query.annotate(sealed=KeyTransform(ENCRYPTED_ENV_KEY, "config"))


class PoolEnvColumn(SealedColumn):
    def rows(self) -> Iterator[tuple[Any, Any]]:
        query = CapacityPool.objects.filter(config__has_key=ENCRYPTED_ENV_KEY)
        for pk, tokens in _stored_tokens(query).values_list("pk", "sealed"):
            if tokens:
                yield pk, tokens

    def write(self, pk: Any, old: Any, new: Any) -> int:
        with transaction.atomic():
            pool = CapacityPool.objects.select_for_update().filter(pk=pk).first()
            current = _stored_tokens(CapacityPool.objects.filter(pk=pk)).values_list(
                "sealed", flat=True
            )
            if pool is None or current.first() != old:
                return 0
            stored = {k: v for k, v in pool.config.items() if k != "envVars"}
            stored[ENCRYPTED_ENV_KEY] = new
            return CapacityPool.objects.filter(pk=pk).update(config=stored)


def pool_env_column() -> SealedColumn:
    return PoolEnvColumn(
        "pool env values",
        CapacityPool,
        "config",
        TOKEN_MAP,
        describe=lambda pool: f"{pool.org.slug}/{pool.name}",
    )
