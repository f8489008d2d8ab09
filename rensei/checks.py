"""System checks for the core app."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages

from rensei import crypto

logger = logging.getLogger(__name__)


def encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A ring that cannot encrypt means no credential can be saved or used: refuse to run."""
    problem = crypto.key_ring_problem()
    if problem is None:
        return []
    return [
        Error(
            problem,
            hint="Set RENSEI_ENCRYPTION_KEYS to one or more comma-separated Fernet keys.",
            id="rensei.E001",
        )
    ]


COLLECT_STATIC = "static files are not collected: run manage.py collectstatic"


@register(Tags.staticfiles, deploy=True)
def static_files_collected(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With DEBUG off the pages name their CSS and JS through collectstatic's manifest; until
    it exists every page is a 500. Part of ``check --deploy``, and run by the WSGI app at
    start-up (rensei/wsgi.py), so production says what is missing instead."""
    storage = storages["staticfiles"]
    if not isinstance(storage, ManifestFilesMixin):
        return []  # DEBUG on: files are served from the source folders as they are
    if storage.exists(storage.manifest_name):
        return []
    return [
        Error(
            COLLECT_STATIC,
            hint=f"{storage.manifest_name} is missing from STATIC_ROOT ({settings.STATIC_ROOT}); "
            "run `python manage.py collectstatic --noinput` on each deploy.",
            id="rensei.E002",
        )
    ]


def require_collected_static() -> None:
    """Stop a production web process whose static files were never collected."""
    problems = static_files_collected()
    if problems:
        message = f"{problems[0].msg} ({problems[0].hint})"
        logger.error(message)
        raise ImproperlyConfigured(message)
