from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from rensei.checks import require_collected_static

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rensei.settings")
application = get_wsgi_application()
# gunicorn runs no system checks: a web process without collected static files (DEBUG off)
# would answer every page with a 500, so it refuses to start and says what to run.
require_collected_static()
