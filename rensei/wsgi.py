from __future__ import annotations

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from rensei.checks import require_collected_static

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rensei.settings")
application = get_wsgi_application()
# gunicorn runs no system checks: a web process without collected static files (DEBUG off)
# would answer every page with a 500, so it refuses to start and says what to run.
require_collected_static()
# What a web process loads once (the apps, every view through the URLconf) lives as long as
# the process: frozen, the garbage collector no longer walks it. Unfrozen, each full
# collection walked about 150,000 such objects, a pause of tens of milliseconds that landed
# on whichever request allocated at that moment (see docs/performance.md, B4).
get_resolver().url_patterns  # noqa: B018 (imports every view now, not on a first request)
gc.collect()
gc.freeze()
