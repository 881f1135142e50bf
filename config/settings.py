"""Settings for the trading terminal, read from the environment alone.

Two runtime modes, chosen by the environment:

* embedded default (no ``REDIS_URL``): SQLite under ``var/``, in-memory channel
  layer and cache, Celery eager, periodic loops inside the daphne process;
* production (``REDIS_URL`` and usually ``DATABASE_URL``): PostgreSQL, Redis for
  the channel layer, the cache and the Celery broker, loops in the
  ``marketdata`` process and Celery beat.

Every setting is documented in ``.env.example``.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

from config.localenv import ensure_local_env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
# Secrets generated on first start for the embedded default (git-ignored).
# Real environment variables always win over the file.
environ.Env.read_env(ensure_local_env(VAR_DIR / "local.env"), overwrite=False)

VERSION = "0.1.0"
GIT_REVISION = env.str("GIT_REVISION", default="")

REDIS_URL = env.str("REDIS_URL", default="")
PRODUCTION_SERVICES = bool(REDIS_URL)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=["http://127.0.0.1:8000", "http://localhost:8000"])

DJANGO_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
]
THIRD_PARTY_APPS = [
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "django_prometheus",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    # allauth.socialaccount.providers.google: added below only when Google is configured.
]
LOCAL_APPS = [
    "core",
    "accounts",
    "streams",
    "brokers",
    "brokers.paper",
    "marketdata",
    "oms",
    "workspaces",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "core.middleware.NoStoreMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'terminal.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock
    # at BEGIN so two writers queue instead of failing with "database is locked"
    # halfway through a transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / env.str("SQLITE_TEST_NAME", default="test.sqlite3"))}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if env.bool("DB_POOL", default=True):
        # daphne (and uvicorn) run each request's sync code in a new thread and
        # Django's connections are per thread, so without a pool every request
        # connects anew and a burst opens one connection per request. The pool
        # is per process, shared by its threads, capped at max_size: a request,
        # task or loop iteration takes a connection and returns it when it ends
        # (pooling needs CONN_MAX_AGE=0). Size it per process kind: README,
        # "Database connections".
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
            # Seconds a caller waits for a free connection before an error.
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
        }
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and channel layer ---------------------------------------------------
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py's async pool raises past its cap (default 100) instead of
                # waiting: a burst of subscriptions would fail. Connections open on demand.
                # Its default socket timeout (5 s) equals channels-redis's blocking pop
                # (5 s), so an idle receive could time out: give reads more room.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": env.int("CHANNEL_LAYER_MAX_CONNECTIONS", default=2000),
                        "socket_timeout": 15,
                    }
                ],
                "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=1000),
                "expiry": 30,
                "prefix": env.str("CHANNEL_LAYER_PREFIX", default="asgi"),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "terminal"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}

# --- Celery ----------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
# No result backend: every task is fire-and-forget (its effects are in the
# database and on the streams), and with a backend each delay() built one per
# thread and subscribed to the task's result channel on a new Redis connection.
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}
CELERY_TIMEZONE = "UTC"
# Worker liveness for /api/v1/health and /metrics: each worker writes a
# heartbeat into the broker's Redis every WORKER_HEARTBEAT_INTERVAL seconds; a
# worker silent for WORKER_HEARTBEAT_STALE_AFTER seconds counts as missing.
# Health reads the heartbeats at most once per HEALTH_CACHE_SECONDS per process.
WORKER_HEARTBEAT_INTERVAL = env.float("WORKER_HEARTBEAT_INTERVAL", default=5.0)
WORKER_HEARTBEAT_STALE_AFTER = env.float("WORKER_HEARTBEAT_STALE_AFTER", default=30.0)
HEALTH_CACHE_SECONDS = env.float("HEALTH_CACHE_SECONDS", default=2.0)
# Celery's Django fix-up closes every connection before and after each task
# (in prefork children the whole pool too), so a worker connected anew per task.
# It does that only every this many tasks now; config/celery.py hands the
# connection back to the pool after each task instead.
CELERY_DB_REUSE_MAX = 1000

# Periodic loops (simulator, broadcaster, sweeper, reconciliation...) run inside
# the web process on the embedded default, in the ``marketdata`` process otherwise.
RUN_LOOPS_IN_PROCESS = env.bool("RUN_LOOPS_IN_PROCESS", default=not REDIS_URL)

# --- Auth ------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "/accounts/login/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="none")
ACCOUNT_ALLOW_REGISTRATION = env.bool("ACCOUNT_ALLOW_REGISTRATION", default=True)
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Trading Terminal"
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="")
SOCIALACCOUNT_PROVIDERS: dict[str, dict] = {}
if GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET:
    # Only then are its login paths routed: without an app, allauth's Google
    # login fails with a 500 instead of the 404 of a path that is not there.
    INSTALLED_APPS.append("allauth.socialaccount.providers.google")
    SOCIALACCOUNT_PROVIDERS["google"] = {
        "APPS": [{"client_id": GOOGLE_CLIENT_ID, "secret": GOOGLE_CLIENT_SECRET, "key": ""}],
        "SCOPE": ["profile", "email"],
    }
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

# Messages in the session, not a cookie: the admin shows a new API key once.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
# Behind TLS (README "Deploy settings"): redirect http to https, HSTS, and the
# header a TLS-terminating proxy sets (``HTTP_X_FORWARDED_PROTO,https``).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Load-balancer probes and the metrics scraper may speak plain http inside the network.
SECURE_REDIRECT_EXEMPT = env.list("SECURE_REDIRECT_EXEMPT", default=[r"^api/v1/health", r"^metrics"])
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1]) if len(_proxy_ssl_header) == 2 else None
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)
CSRF_FAILURE_VIEW = "core.handlers.csrf_failure"  # the JSON error shape under /api/

# API keys: a fast hash (SHA-256) of a high-entropy secret, found by public prefix.
API_KEY_LAST_USED_RESOLUTION = env.int("API_KEY_LAST_USED_RESOLUTION", default=60)
# Failed API-key authentications per client address; past it 429 until the window ends.
THROTTLE_AUTH_FAILURES = env.str("THROTTLE_AUTH_FAILURES", default="60/min")

# --- Broker credentials ---------------------------------------------------------
# Comma-separated Fernet keys, newest first; older keys still decrypt.
BROKER_ENCRYPTION_KEYS = env.list("BROKER_ENCRYPTION_KEYS")

# --- REST ------------------------------------------------------------------------
APPEND_SLASH = False  # paths answer with and without one slash, never by redirect
# Request limits: a larger body answers 413, deeper JSON 400 (core/parsers.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)
JSON_MAX_DEPTH = env.int("JSON_MAX_DEPTH", default=32)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.permissions.ApiKeyScopePermission",
    ],
    "DEFAULT_RENDERER_CLASSES": ["core.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exceptions.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.AnonRateThrottle",
        "core.throttling.UserRateThrottle",
        "core.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="600/min"),
        "user": env.str("THROTTLE_USER", default="100000/min"),
        "api_keys": env.str("THROTTLE_API_KEYS", default="120/min"),
        "orders": env.str("THROTTLE_ORDERS", default="100000/min"),
    },
    # Client addresses come from REMOTE_ADDR, or X-Forwarded-For when this many
    # proxies in front add to it (0: the header is ignored, so it cannot be forged).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Trading Terminal API",
    "DESCRIPTION": "Multi-broker trading terminal: REST API. WebSocket streams: /api/v1/ws/asyncapi.json.",
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc assets come from the installed drf-spectacular-sidecar, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["core.schema.drop_trailing_slash_variants"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.document_error_responses",
        "marketdata.api.schema.udf_quote_values_may_be_empty",
    ],
    # Choice sets sharing a field name get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "BrokerKindEnum": "brokers.models.BrokerKind",
        "SideEnum": "oms.models.Side",
        "OrderStatusEnum": "oms.models.OrderStatus",
        "HealthStatusEnum": ["ok", "degraded"],
    },
    # core/urls.py: ids a 64-bit column holds; text that can be stored.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "textpath": str},
    "SECURITY": [{"ApiKeyAuth": []}, {"cookieAuth": []}],
    "APPEND_COMPONENTS": {
        "securitySchemes": {"ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
    },
}

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "x-api-key",
    "x-csrftoken",
    "x-request-id",
    "idempotency-key",
]
CORS_EXPOSE_HEADERS = ["x-request-id", "idempotent-replayed"]

# --- Metrics ---------------------------------------------------------------------
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
PROMETHEUS_EXPORT_MIGRATIONS = False

# --- WebSocket gateway -------------------------------------------------------------
WS_HEARTBEAT_INTERVAL = env.float("WS_HEARTBEAT_INTERVAL", default=15.0)
WS_PONG_TIMEOUT = env.float("WS_PONG_TIMEOUT", default=10.0)
WS_AUTH_TIMEOUT = env.float("WS_AUTH_TIMEOUT", default=10.0)
WS_MARKET_FLUSH_INTERVAL = env.float("WS_MARKET_FLUSH_INTERVAL", default=0.05)
WS_ALLOWED_ORIGINS = env.list("WS_ALLOWED_ORIGINS", default=[])
# An account-channel update ahead of its turn waits this long for the missing one.
WS_GAP_TIMEOUT = env.float("WS_GAP_TIMEOUT", default=0.5)
# Frames waiting to be written to one client; a client this far behind is closed.
WS_SEND_QUEUE = env.int("WS_SEND_QUEUE", default=1000)
# Subscriber registry (streams.subscribers): a process's entry expires this many
# seconds after its last refresh; refreshed (rewritten whole) every SUBSCRIBERS_REFRESH.
SUBSCRIBERS_TTL = env.float("SUBSCRIBERS_TTL", default=30.0)
SUBSCRIBERS_REFRESH = env.float("SUBSCRIBERS_REFRESH", default=5.0)
SYSTEM_STATUS_INTERVAL = env.float("SYSTEM_STATUS_INTERVAL", default=5.0)

# --- I18N / static -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Logging -------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.logging.RequestIdFilter"},
        "mask": {"()": "core.logging.MaskSecretsFilter"},
    },
    "formatters": {
        "json": {
            "()": "core.logging.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "mask"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
    },
}

# --- Market data -----------------------------------------------------------------------
SIMULATOR_ENABLED = env.bool("SIMULATOR_ENABLED", default=True)
SIMULATOR_TICK_INTERVAL = env.float("SIMULATOR_TICK_INTERVAL", default=0.25)
SIMULATOR_SEED = env.int("SIMULATOR_SEED", default=42)
SIMULATOR_HISTORY_DAYS = env.int("SIMULATOR_HISTORY_DAYS", default=30)
QUOTE_STALE_SECONDS = env.float("QUOTE_STALE_SECONDS", default=10.0)
QUOTE_THROTTLE_INTERVAL = env.float("QUOTE_THROTTLE_INTERVAL", default=0.05)
HISTORY_MAX_BARS = env.int("HISTORY_MAX_BARS", default=250_000)
DATAFEED_PUBLIC = env.bool("DATAFEED_PUBLIC", default=False)
DATAFEED_MAX_QUOTE_SYMBOLS = env.int("DATAFEED_MAX_QUOTE_SYMBOLS", default=100)
BAR_BROADCASTER_ENABLED = env.bool("BAR_BROADCASTER_ENABLED", default=True)
BAR_BROADCASTER_INTERVAL = env.float("BAR_BROADCASTER_INTERVAL", default=1.0)
BAR_BROADCASTER_SYMBOLS = env.list("BAR_BROADCASTER_SYMBOLS", default=[])  # empty: every active instrument
BAR_BROADCASTER_RESOLUTIONS = env.list("BAR_BROADCASTER_RESOLUTIONS", default=["1", "5", "15", "30", "60", "240", "1D", "1W", "1M"])

# --- OMS ------------------------------------------------------------------------------------
# Pre-trade risk per account; 0 (or empty) lifts a limit (benchmarks lift them all).
OMS_RISK = {
    "MAX_ORDER_QTY": env.str("RISK_MAX_ORDER_QTY", default="1000000"),
    "MAX_ORDER_NOTIONAL": env.str("RISK_MAX_ORDER_NOTIONAL", default="100000000"),
    "ALLOWED_SYMBOLS": env.list("RISK_ALLOWED_SYMBOLS", default=[]),
    "MAX_ORDERS_PER_SECOND": env.int("RISK_MAX_ORDERS_PER_SECOND", default=50),
    "CHECK_BUYING_POWER": env.bool("RISK_CHECK_BUYING_POWER", default=True),
}
# Orders left in pending_new longer than this are picked up by the sweeper.
OMS_SWEEP_AFTER_SECONDS = env.float("OMS_SWEEP_AFTER_SECONDS", default=10.0)
OMS_SWEEP_INTERVAL = env.float("OMS_SWEEP_INTERVAL", default=5.0)
OMS_RECONCILE_INTERVAL = env.float("OMS_RECONCILE_INTERVAL", default=30.0)
OMS_MARKS_INTERVAL = env.float("OMS_MARKS_INTERVAL", default=1.0)
# Reconciliation: how far back the first run of an account looks, and how long
# an order may stay unknown (not found at the broker) before it is rejected.
OMS_RECONCILE_LOOKBACK_SECONDS = env.float("OMS_RECONCILE_LOOKBACK_SECONDS", default=86400.0)
OMS_RECONCILE_GRACE_SECONDS = env.float("OMS_RECONCILE_GRACE_SECONDS", default=120.0)
# Production: beat schedules the OMS's periodic work on the workers (the
# embedded default runs the same services as in-process loops, oms/loops.py).
# A run that waited longer than its interval is dropped: the next one comes.
CELERY_BEAT_SCHEDULE.update(
    {
        "oms.orders_sweep": {"task": "oms.orders_sweep", "schedule": OMS_SWEEP_INTERVAL, "options": {"expires": OMS_SWEEP_INTERVAL}},
        "oms.accounts_reconcile_all": {
            "task": "oms.accounts_reconcile_all",
            "schedule": OMS_RECONCILE_INTERVAL,
            "options": {"expires": OMS_RECONCILE_INTERVAL},
        },
        "oms.positions_mark": {"task": "oms.positions_mark", "schedule": OMS_MARKS_INTERVAL, "options": {"expires": OMS_MARKS_INTERVAL}},
    }
)

# --- Paper broker ------------------------------------------------------------------------
# Amounts are decimal strings (never floats: this is money).


def _currency_amounts(name: str, text: str) -> dict[str, str]:
    """``KRW:50000000,INR:1000000`` -> ``{"KRW": "50000000", "INR": "1000000"}``,
    strictly: upper-case codes, plain non-negative decimals, each code once."""
    import re

    from django.core.exceptions import ImproperlyConfigured

    amounts: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.strip().split(","))):
        code, sep, amount = item.partition(":")
        code, amount = code.strip(), amount.strip()
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9]{1,9}", code) or not re.fullmatch(r"[0-9]{1,18}(\.[0-9]{1,10})?", amount):
            raise ImproperlyConfigured(f"{name}: {item!r} is not CURRENCY:AMOUNT (e.g. KRW:50000000).")
        if code in amounts:
            raise ImproperlyConfigured(f"{name}: {code} is given twice.")
        amounts[code] = amount
    return amounts


PAPER_STARTING_CASH = env.str("PAPER_STARTING_CASH", default="1000000")  # in the account's base currency
# More starting balances, per currency: KRW:50000000,INR:1000000 (added to the base currency's when it is named).
PAPER_STARTING_BALANCES = _currency_amounts("PAPER_STARTING_BALANCES", env.str("PAPER_STARTING_BALANCES", default=""))
# An order in a currency the account lacks: "convert" the shortfall from the base
# currency at the market data's FX rate, or "refuse" the order.
PAPER_FX_MODE = env.str("PAPER_FX_MODE", default="convert")
if PAPER_FX_MODE not in ("convert", "refuse"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"PAPER_FX_MODE must be convert or refuse, not {PAPER_FX_MODE!r}.")
PAPER_FEE_BPS = env.str("PAPER_FEE_BPS", default="1")
PAPER_MIN_FEE = env.str("PAPER_MIN_FEE", default="0")  # in the instrument's currency
PAPER_SLIPPAGE_BPS = env.str("PAPER_SLIPPAGE_BPS", default="2")  # market and triggered stop orders
# Margin rate per instrument type: the share of the notional an open position ties up.
PAPER_MARGIN_RATES = env.dict(
    "PAPER_MARGIN_RATES", default={"stock": "1", "crypto": "1", "index": "1", "future": "0.1", "option": "1", "fx": "1"}
)
