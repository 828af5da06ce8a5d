"""CrisisDesk settings.

Everything comes from the environment, with defaults that run a local desk on
one machine with no server at all: an SQLite file, Celery's filesystem broker
and e-mail written as .eml files under ``var/``. ``CRISISDESK_ENV=production``
turns the defaults into refusals: no SECRET_KEY or ALLOWED_HOSTS, no start.
"""

from __future__ import annotations

from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from kombu import Queue

from crisisdesk.env import (
    env_bool,
    env_broker,
    env_choice,
    env_database,
    env_int,
    env_list,
    env_networks,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CRISISDESK_DATA_DIR", str(BASE_DIR / "var")))  # type: ignore[arg-type]

ENVIRONMENT = env_choice("CRISISDESK_ENV", "local", ("local", "production"))
PRODUCTION = ENVIRONMENT == "production"

DEBUG = env_bool("DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG=true is refused when CRISISDESK_ENV=production.")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when CRISISDESK_ENV=production (50 or more random characters)."
        )
    SECRET_KEY = "local-only-insecure-key-never-used-in-production-6f1d2c9a8b7e"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is required when CRISISDESK_ENV=production "
        "(comma-separated host names, e.g. crisisdesk.example.com)."
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# The public address used in links inside e-mails (acknowledge links, iCal feeds).
SITE_URL = (env_str("SITE_URL", "http://127.0.0.1:8000") or "").rstrip("/")
COMPANY_NAME = env_str("CRISISDESK_COMPANY_NAME", "Example Ltd")
# Filled into message templates as {contact_channel} and {status_page_url}; a template
# that uses one while it is unset keeps a visible "missing fact" marker that blocks approval.
CRISISDESK_CONTACT_CHANNEL = env_str("CRISISDESK_CONTACT_CHANNEL", "")
# Where a drill's stakeholder messages go instead of the real contacts (every one of them,
# marked [DRILL]); never to the audience itself.
CRISISDESK_DRILL_MAILBOX = env_str("CRISISDESK_DRILL_MAILBOX", "drill-mailbox@localhost")
CRISISDESK_STATUS_PAGE_URL = env_str("CRISISDESK_STATUS_PAGE_URL", "")
# The public status page (/status/): a resolved incident stays at the top this many days,
# then is listed under its history.
CRISISDESK_STATUS_KEEP_DAYS = env_int("CRISISDESK_STATUS_KEEP_DAYS", 7, minimum=0)
# The proxies in front of the web processes (CIDR list, e.g. 127.0.0.1/32 for a proxy on
# the same machine): a request from one of them is counted against the address its
# X-Forwarded-For names (crisisdesk/clientip.py). Empty: the header is never believed.
CRISISDESK_TRUSTED_PROXIES = env_networks("CRISISDESK_TRUSTED_PROXIES", [])
# Subscription requests (confirmation e-mails) per hour: per address, and per client
# address (crisisdesk/clientip.py: behind a proxy, set CRISISDESK_TRUSTED_PROXIES).
CRISISDESK_SUBSCRIBE_PER_ADDRESS = env_int("CRISISDESK_SUBSCRIBE_PER_ADDRESS", 3, minimum=1)
CRISISDESK_SUBSCRIBE_PER_CLIENT = env_int("CRISISDESK_SUBSCRIBE_PER_CLIENT", 20, minimum=1)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "simple_history",
    "django_htmx",
    "crisisdesk.apps.CrisisDeskConfig",
    "playbooks",
    "incidents",
    "incidents.listening.apps.ListeningConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The signed-in person's language and time zone (playbooks/people.py).
    "playbooks.people.PreferencesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Records who made each change in the audit history.
    "simple_history.middleware.HistoryRequestMiddleware",
    # request.htmx: the war room answers htmx requests with a partial.
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "crisisdesk.urls"
WSGI_APPLICATION = "crisisdesk.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'crisisdesk.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the Celery worker write the same file: WAL lets readers
    # go on during a write, IMMEDIATE takes the write lock at BEGIN so two writers
    # queue on the timeout instead of failing with "database is locked" mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not :memory:, so that a Celery worker started by a test sees the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-crisisdesk.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env_int("DB_CONN_MAX_AGE", 60, minimum=0))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A worker host that falls off the network mid-transaction leaves its session
    # holding row locks (an incident, a send run) that every other worker would wait
    # on until TCP gives up (hours). No transaction of the desk waits on anything
    # outside the database, so one idle this long is abandoned: PostgreSQL ends it
    # and its locks go. 0: never.
    _idle_ms = 1000 * env_int("DB_IDLE_IN_TRANSACTION_SECONDS", 60, minimum=0)
    if _idle_ms and "postgresql" in DATABASES["default"]["ENGINE"]:
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
            f"-c idle_in_transaction_session_timeout={_idle_ms}"
        )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One cache every process shares (the status page's rendered pages and their version,
# the subscription rate limits): Redis when CACHE_URL names it, else files in the data
# dir, which every web process on the machine reads.
CACHE_URL = env_str("CACHE_URL", "")
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://")):
        raise ImproperlyConfigured("CACHE_URL must be a redis:// or rediss:// address.")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "crisisdesk",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 2000},
        }
    }

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The war room's own sign-in page (templates/registration/); the admin keeps its own.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "warroom:dashboard"
# A password-reset link works once, for two hours.
PASSWORD_RESET_TIMEOUT = 2 * 60 * 60
LOGOUT_REDIRECT_URL = "login"
ANONYMOUS_USER_NAME = None  # guardian: anonymous users get no object permissions

LANGUAGE_CODE = env_str("LANGUAGE_CODE", "en")
LANGUAGES = [
    ("en", _("English")),
    ("he", _("Hebrew")),
    ("hu", _("Hungarian")),
    ("el", _("Greek")),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "crisisdesk" / "static"]

# E-mail: SMTP when EMAIL_HOST is set; otherwise each message is written to
# var/mail/ as an .eml file that any mail program opens.
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20, minimum=1)
    if EMAIL_USE_TLS and EMAIL_USE_SSL:
        raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be true.")
else:
    EMAIL_BACKEND = env_str("EMAIL_BACKEND", "crisisdesk.mail.EmlFileBackend")
EMAIL_FILE_PATH = VAR_DIR / "mail"
# Mass sends (a message to an audience) send at most this many e-mails per second to
# one SMTP server, across every worker (a token bucket in Redis when the broker is
# Redis; per worker process otherwise); 0: as fast as the server takes them. Pages
# to on-call people are never held back by it (crisisdesk/ratelimit.py).
CRISISDESK_SMTP_RATE_PER_SECOND = env_int("CRISISDESK_SMTP_RATE_PER_SECOND", 0, minimum=0)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "CrisisDesk <crisisdesk@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Celery. The filesystem transport needs no server and, with a real worker,
# honours countdowns and ETAs; CELERY_BROKER_URL=redis://... for production.
CELERY_BROKER_URL = env_broker("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    # kombu's filesystem transport, writing each message atomically (crisisdesk/broker.py).
    CELERY_BROKER_TRANSPORT = "crisisdesk.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The transport polls its folder; a second (the default) would cap a
        # worker at a message or two a second.
        "polling_interval": 0.05,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis redelivers an unacknowledged message after this long; nothing is
    # enqueued further ahead than a minute (see incidents/escalation.py), so an
    # hour is never reached by a healthy ETA message.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
elif CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # RabbitMQ: a publish returns only once the broker has the message (publisher
    # confirms), so a task queued after commit is not lost in a socket buffer when
    # RabbitMQ goes down; Celery's queue is a durable classic queue and its messages
    # persistent (Celery's defaults, pinned here). Not quorum queues: Celery runs
    # countdowns and ETAs on them only through its "native delayed delivery"
    # (whole seconds, topic exchanges, 28 extra queues), and the engine's ETAs are
    # to the millisecond; DEPLOYMENT.md says more. An unacknowledged message is
    # redelivered as soon as its worker's connection drops, well inside RabbitMQ's
    # consumer timeout (30 min) since nothing is queued more than a minute ahead.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "classic"
    CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
    # Missed heartbeats (a worker host cut off the network) close its connection, so
    # RabbitMQ hands that worker's unacknowledged messages to the others.
    CELERY_BROKER_HEARTBEAT = 10
    # No remote control (`celery inspect`, `celery control`): its queue is exclusive to
    # one connection, and a worker whose host comes back from a network cut before
    # RabbitMQ has noticed its old connection dead could not declare it again and
    # would exit (ResourceLocked). The desk never uses it.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Two queues, every worker takes from both: mass sends (a message's outbox written in
# batches, its chunks of e-mails) go to "bulk", so a statement to 100,000 contacts
# never stands in front of a page, the sweep or the dead man's switch in one queue.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (Queue("celery", routing_key="celery"), Queue("bulk", routing_key="bulk"))
CELERY_TASK_ROUTES = {
    "incidents.tasks.deliver_chunk": {"queue": "bulk", "routing_key": "bulk"},
    "incidents.tasks.message_fanout": {"queue": "bulk", "routing_key": "bulk"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A pool process that has grown past this (resident, in KiB for Celery) is replaced
# once its task ends: a safety net for a worker that runs for months (bench/soak.py
# measures the growth; BENCHMARKS.md). With late acknowledgement nothing is lost.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = 1024 * env_int(
    "CRISISDESK_WORKER_MAX_MEMORY_MB", 400, minimum=64
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# How often beat runs the escalation sweep (the bound on recovery after a lost message).
CRISISDESK_SWEEP_SECONDS = env_int("CRISISDESK_SWEEP_SECONDS", 5, minimum=1)
# A last sweep older than this means beat has stopped: /readyz fails and every worker
# e-mails the crisis managers once (incidents/watchdog.py).
CRISISDESK_SWEEP_STALE_SECONDS = env_int(
    "CRISISDESK_SWEEP_STALE_SECONDS", 3 * CRISISDESK_SWEEP_SECONDS, minimum=1
)
# How often each worker checks the last sweep (its own thread, not a beat task).
CRISISDESK_WATCHDOG_SECONDS = env_int(
    "CRISISDESK_WATCHDOG_SECONDS", CRISISDESK_SWEEP_SECONDS, minimum=1
)
# An e-mail due this long ago and still not handed to the SMTP server: the outbox is stuck.
CRISISDESK_OUTBOX_STUCK_SECONDS = env_int("CRISISDESK_OUTBOX_STUCK_SECONDS", 300, minimum=1)
# /metrics (incidents/metrics.py): a bearer token, and/or the networks that may scrape
# the web process directly (not through the proxy). Both refused: 403.
CRISISDESK_METRICS_TOKEN = env_str("CRISISDESK_METRICS_TOKEN", "")
CRISISDESK_METRICS_NETWORKS = env_networks(
    "CRISISDESK_METRICS_NETWORKS", ["127.0.0.0/8", "::1/128"]
)
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    # The safety net of the timer engine (incidents/escalation.py): sends due
    # timers and stuck notifications. A sweep not started within its interval is
    # dropped, so a backlog never piles up sweeps.
    "escalation-sweep": {
        "task": "incidents.tasks.sweep",
        "schedule": CRISISDESK_SWEEP_SECONDS,
        "options": {"expires": CRISISDESK_SWEEP_SECONDS},
    },
    # One digest a week per owner of overdue reviews; run daily so a missed
    # Monday, or an item that falls overdue mid-week, is still told that week.
    "review-reminders": {
        "task": "playbooks.tasks.send_review_reminders",
        "schedule": crontab(hour=7, minute=0),
    },
    # Listening: queue the feeds due for a poll (incidents/listening/feeds.py).
    "listening-feeds": {
        "task": "incidents.listening.tasks.poll_due",
        "schedule": 60,
        "options": {"expires": 60},
    },
    # Owners of overdue post-mortem action items, once a day.
    "action-item-reminders": {
        "task": "incidents.tasks.send_action_item_reminders",
        "schedule": crontab(hour=7, minute=5),
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "crisisdesk.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "crisisdesk.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CrisisDesk API",
    "DESCRIPTION": (
        "Crisis playbooks, incidents, escalation, communications and post-mortems. "
        "Authenticate with a session or `Authorization: Token <key>` "
        "(`manage.py issue_token USERNAME`)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Public on purpose: the schema and Swagger UI describe the API's shapes and carry no
    # row of data (tests/incidents/test_leaks.py checks that no incident appears in them).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Swagger UI from the installed sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "crisisdesk.api.document_errors",
    ],
    # One name for choice sets several fields share (risk category, playbook scenario,
    # incident category; the languages of groups, contacts, templates and messages).
    "ENUM_NAME_OVERRIDES": {
        "ScenarioEnum": "playbooks.models.Scenario",
        "LanguageEnum": "crisisdesk.settings.LANGUAGES",
        "ChannelEnum": "playbooks.models.Channel",
        "ActionItemStatusEnum": "incidents.models.ActionItemStatus",
        "MentionChannelEnum": "incidents.listening.models.MentionChannel",
        "SourceKindEnum": "incidents.listening.models.Source.Kind",
        "MentionKindEnum": "incidents.listening.models.Mention.Kind",
        "MessageStatusEnum": "incidents.models.Message.Status",
        "NoReplyReasonEnum": "incidents.listening.models.Mention.NoReplyReason",
    },
}

# The audit history is read, never written back: no admin history page offers to revert
# (crisisdesk.admin_tools.AuditHistoryAdmin also refuses the POST itself).
SIMPLE_HISTORY_REVERT_DISABLED = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Probes and Prometheus ask the web process directly over loopback, without TLS.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    if len(set(SECRET_KEY)) < 5 or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters of varied text.")
