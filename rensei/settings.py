"""One settings module, configured by environment variables alone (see .env.example).

With no environment at all it runs the embedded default: SQLite under var/, an embedded
filesystem broker, DEBUG on. Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY,
RENSEI_ENCRYPTION_KEYS and DEBUG=false.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("RENSEI_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)

_DEV_SECRET_KEY = "django-insecure-rensei-development-only-never-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    # Login throttling: failed logins are counted per username + IP and lock out at a limit.
    "axes",
    "rensei",
    "pools",
    "sessions.apps.AgentSessionsConfig",
    "billing",
    "events",
    "budgets",
]

MIDDLEWARE = [
    # First: every log line of the request, and its response, carry the request id.
    "rensei.logging.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # The product's 404 and 500 pages while DEBUG is on too (rensei/errors.py).
    "rensei.errors.ProductErrorPages",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "rensei.middleware.ActiveOrgMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "rensei.urls"
WSGI_APPLICATION = "rensei.wsgi.application"
ASGI_APPLICATION = "rensei.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "rensei.context_processors.navigation",
            ],
        },
    }
]

# --- Database -----------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'rensei.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside the writer, the busy
    # timeout makes a writer wait for the lock instead of failing, and IMMEDIATE takes the
    # write lock at BEGIN so two transactions never deadlock upgrading a read lock.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
    }
    # A file (not :memory:) so a Celery worker subprocess can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes checks every authenticate() call first (it needs the request, so tests log in
# with force_login, or through the login page).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
# Lock the username from that IP only: a stranger cannot lock a colleague out everywhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Usernames cut to the 255 characters axes stores (the login form does not bound them).
AXES_USERNAME_CALLABLE = "rensei.security.axes_username"
# The login page again, with "Too many failed login attempts…", answered 429.
AXES_LOCKOUT_TEMPLATE = "registration/login.html"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- I18N / time --------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Dates and times as the pages write them (2026-01-31 14:05:09 UTC), in the admin too:
# rensei/formats/en/ replaces the en locale's "Jan. 31, 2026, 2:05 p.m.".
FORMAT_MODULE_PATH = ["rensei.formats"]
USE_I18N = False
USE_TZ = True

# --- Static -------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security (production values come from DEBUG=false) ----------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
# Trust X-Forwarded-Proto only behind a proxy that sets it (and strips a client's own):
# otherwise any client could claim HTTPS by sending the header.
RENSEI_TRUSTED_PROXY_SSL_HEADER = env.bool("RENSEI_TRUSTED_PROXY_SSL_HEADER", default=False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if RENSEI_TRUSTED_PROXY_SSL_HEADER else None
)
# Probes and the metrics scraper talk plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Strict CSP: scripts and styles only from our own static files, never inline (templates
# ask for behaviour with data attributes: static/js/behaviours.js). Bootstrap draws its
# form controls with data: SVG images, hence data: for images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": [NONE],
    }
}
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# sensitive_variables / sensitive_post_parameters apply on DEBUG's technical 500 page too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "rensei.security.SecretsAlwaysHidden"
# DEBUG's technical 404 and 500 pages (URL patterns, settings, tracebacks) only when asked for:
# the demo runs with DEBUG on and shows the product's own pages; tracebacks go to the log.
RENSEI_TECHNICAL_ERRORS = env.bool("RENSEI_TECHNICAL_ERRORS", default=False)
# Test-only fault injection (rensei.failpoints), e.g. "after-create=crash". Empty: none.
RENSEI_FAILPOINTS = env.str("RENSEI_FAILPOINTS", default="")

# --- Celery -------------------------------------------------------------------------------
# The embedded default needs no server: messages pass through files under var/broker.
# Production points CELERY_BROKER_URL at Redis.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="rensei")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's own filesystem transport lets a worker read a message before it is written
    # (the worker then dies on JSONDecodeError); rensei.broker writes atomically.
    # CELERY_BROKER_TRANSPORT=filesystem selects the stock one (for comparison only).
    CELERY_BROKER_TRANSPORT = (
        env.str("CELERY_BROKER_TRANSPORT", default="") or "rensei.broker:Transport"
    )
    # Remote control (celery inspect/control) broadcasts through files that race the same
    # way, and nothing in the project uses it.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    _default_results = f"file://{VAR_DIR / 'results'}"
    (VAR_DIR / "results").mkdir(parents=True, exist_ok=True)
elif CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # RabbitMQ: every queue Celery declares is a quorum queue (replicated, on disk) bound to a
    # topic exchange, so countdown retries go through RabbitMQ's native delayed delivery
    # (quorum queues do not serve worker-held countdowns; the worker sets the delayed
    # delivery up when its queues are quorum ones, hence CELERY_TASK_QUEUES). Publishes wait
    # for the broker's confirm. A dead worker's unacknowledged messages come back when its
    # connection closes: no visibility timeout. Results (only a readiness ping) go by RPC.
    CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = "quorum"
    CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = "topic"
    from kombu import Exchange, Queue

    CELERY_TASK_QUEUES = (
        Queue(
            CELERY_TASK_DEFAULT_QUEUE,
            Exchange(CELERY_TASK_DEFAULT_QUEUE, type="topic"),
            routing_key=CELERY_TASK_DEFAULT_QUEUE,
            queue_arguments={"x-queue-type": "quorum"},
        ),
    )
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    _default_results = "rpc://"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
        # How soon a worker takes back what a dead worker left unacknowledged: a sweep every
        # interval seconds, scanning Redis on every throttle-th sweep (kombu's defaults).
        # Tests with a short visibility timeout lower both to 1.
        "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
        "unacked_restore_throttle": env.int("CELERY_UNACKED_RESTORE_THROTTLE", default=10),
        # A worker killed while it holds the sweep's lock blocks every sweep this long.
        "unacked_mutex_expire": env.int("CELERY_UNACKED_MUTEX_EXPIRE", default=300),
    }
    _default_results = CELERY_BROKER_URL
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=_default_results)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# How long the pool waits for a killed child's result before WorkerLostError (and, with
# reject_on_worker_lost, the redelivery). Tests that kill workers on purpose shorten it.
CELERY_WORKER_LOST_WAIT = env.float("CELERY_WORKER_LOST_WAIT", default=10.0)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "heartbeat": {"task": "rensei.tasks.heartbeat", "schedule": 60.0},
    # Reconciler: our records against E2B's view of the world.
    "reconcile": {
        "task": "sessions.tasks.reconcile_all",
        "schedule": env.float("RENSEI_RECONCILE_EVERY", default=60.0),
    },
    # Pools' lifecycle policies: idle auto-pause, paused too long, maximum age.
    "lifecycle-policies": {"task": "sessions.tasks.apply_policies", "schedule": 60.0},
    # The sessions list's CPU column: the latest sample of each running sandbox.
    "cpu-samples": {
        "task": "sessions.tasks.sample_cpu",
        "schedule": 60.0,
        "options": {"expires": 50.0},
    },
    # Daily accrual: close and reopen running intervals at each UTC midnight.
    "daily-accrual": {"task": "billing.tasks.daily_accrual", "schedule": crontab(minute=0, hour=0)},
    # Ledger check: the daily rollup must equal the ledger (alerts on a mismatch).
    "check-ledger": {
        "task": "billing.integrity.check_ledger",
        "schedule": crontab(minute=30, hour=0),
    },
    # Reconciliation: each org's day that just ended, ledger vs intervals vs E2B's view.
    "reconcile-billing": {
        "task": "billing.recon_runs.reconcile_yesterday",
        "schedule": crontab(minute=45, hour=0),
    },
    # Events out: publish the outbox and send due webhook deliveries (events/tasks.py).
    "events-drain": {
        "task": "events.tasks.drain",
        "schedule": env.float("RENSEI_WEBHOOK_DRAIN_EVERY", default=2.0),
        "options": {"expires": 10.0},
    },
    # Budgets: consumption, threshold alerts, blocks and pauses (budgets/sweep.py).
    "budgets": {
        "task": "budgets.tasks.evaluate_budgets",
        "schedule": env.float("RENSEI_BUDGETS_EVERY", default=60.0),
    },
    # Events older than RENSEI_EVENTS_RETENTION_DAYS go, with their deliveries.
    "events-prune": {"task": "events.tasks.prune", "schedule": crontab(minute=15)},
}

# --- Events out (webhooks) ----------------------------------------------------------------
# Webhooks may go to 127.0.0.1/::1/localhost: for development and tests only (on with DEBUG).
RENSEI_WEBHOOKS_ALLOW_LOOPBACK = env.bool("RENSEI_WEBHOOKS_ALLOW_LOOPBACK", default=DEBUG)
RENSEI_WEBHOOK_RETRY_BASE_SECONDS = env.float("RENSEI_WEBHOOK_RETRY_BASE_SECONDS", default=10.0)
RENSEI_WEBHOOK_RETRY_HOURS = env.float("RENSEI_WEBHOOK_RETRY_HOURS", default=24.0)
RENSEI_WEBHOOK_DISABLE_AFTER = env.int("RENSEI_WEBHOOK_DISABLE_AFTER", default=100)
RENSEI_WEBHOOK_CLAIM_SECONDS = env.float("RENSEI_WEBHOOK_CLAIM_SECONDS", default=60.0)
# Seconds a receiver has to answer one POST (10; the fault tests shorten it).
RENSEI_WEBHOOK_TIMEOUT_SECONDS = env.float("RENSEI_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Deliveries of different sessions a drain sends side by side.
RENSEI_WEBHOOK_DELIVERY_THREADS = env.int("RENSEI_WEBHOOK_DELIVERY_THREADS", default=4)
RENSEI_EVENTS_RETENTION_DAYS = env.int("RENSEI_EVENTS_RETENTION_DAYS", default=30)

# --- Email (budget alerts) -----------------------------------------------------------------
# The demo prints mail on the console; production sets EMAIL_BACKEND to SMTP and the host.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="") or (
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default="") or str(VAR_DIR / "mail")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="rensei@localhost")

# --- Finance ------------------------------------------------------------------------------
# A day's reconciliation alerts when its unsettled findings add up to this many seconds.
RENSEI_RECONCILE_ALERT_SECONDS = env.float("RENSEI_RECONCILE_ALERT_SECONDS", default=60.0)
# Cost per Issue flags an issue with more sandboxes started in one UTC hour than this.
RENSEI_RUNAWAY_SANDBOXES_PER_HOUR = env.int("RENSEI_RUNAWAY_SANDBOXES_PER_HOUR", default=6)

# --- E2B ----------------------------------------------------------------------------------
E2B_API_KEY = env.str("E2B_API_KEY", default="")
E2B_API_URL = env.str("E2B_API_URL", default="")
E2B_SANDBOX_URL = env.str("E2B_SANDBOX_URL", default="")
# Seconds a provider call made inside a web request (Test connection) may take before the page
# says the provider did not answer: a stalled provider must not hold a web thread.
RENSEI_WEB_PROVIDER_TIMEOUT = env.float("RENSEI_WEB_PROVIDER_TIMEOUT", default=5.0)

# --- Secrets at rest ----------------------------------------------------------------------
# Comma-separated Fernet keys; the first encrypts, all decrypt. In DEBUG a development key is
# generated once under var/ when none is set (see rensei.crypto).
RENSEI_ENCRYPTION_KEYS = env.list("RENSEI_ENCRYPTION_KEYS", default=[])

# --- Operations ---------------------------------------------------------------------------
# Bearer token /metrics asks for. Empty: /metrics answers 404, except with DEBUG on (open).
RENSEI_METRICS_TOKEN = env.str("RENSEI_METRICS_TOKEN", default="")

# --- Logging ------------------------------------------------------------------------------
# plain: human lines; json: one JSON object per line (rensei/logging.py), for collectors.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "rensei.logging.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "rensei.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own console handler (DEBUG only) would print its lines a second time,
        # outside the chosen format: the root handler alone writes them.
        "django": {"level": "INFO"},
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
