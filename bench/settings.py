"""The production settings, with one change for the benchmarks.

``collectstatic`` with the manifest storage currently fails: the vendored
``bootstrap.min.css`` ends with a ``sourceMappingURL`` to a ``.map`` file that is not
vendored. The benchmarks fetch HTML only, so static files are collected with WhiteNoise's
compressing storage without the manifest (a ``{% static %}`` URL then has no content hash,
which saves a dictionary lookup per tag and nothing else).
"""

from __future__ import annotations

from rensei.settings import *  # noqa: F403
from rensei.settings import STORAGES

STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
