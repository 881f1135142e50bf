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
    "django_celery_beat",
    "django_htmx",
    # allauth.socialaccount.providers.google: added below only when Google is configured.
]
LOCAL_APPS = [
    "core",
    "accounts",
    "streams",
    "brokers",
    "brokers.paper",
    "brokers.kis",
    "brokers.kite",
    "brokers.ccxt",
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
    "django_htmx.middleware.HtmxMiddleware",
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

# --- Back-pressure: HTTP requests in flight per process (core/asgi_limits.py) -----
# One over the limit waits up to WEB_LIMIT_WAIT seconds for a slot, then answers
# 503 server_busy with Retry-After instead of queueing on the database pool.
# Default: the process's pool size (each request needs one connection; in-process
# loops take theirs beside), 16 on SQLite (one writer). 0 turns the limit off.
# WebSocket connections are not counted (uvicorn's --limit-concurrency, from
# WEB_MAX_CONNECTIONS in the Procfile, bounds connections of every kind).
_POOL = DATABASES["default"].get("OPTIONS", {}).get("pool")
WEB_LIMIT_CONCURRENCY = env.int("WEB_LIMIT_CONCURRENCY", default=_POOL["max_size"] if _POOL else 16)
WEB_LIMIT_WAIT = env.float("WEB_LIMIT_WAIT", default=1.0)

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
# A worker rides out a Redis restart: it reconnects (every few seconds, without
# giving up) and goes on consuming; tests/test_redis_outage_orders.py.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# Beat reads its schedule from the database (django-celery-beat), editable in
# the admin: the periodic tasks of PERIODIC_TASKS are created there once, on
# migrate (oms.schedules), and never overwritten. CELERY_BEAT_SCHEDULE entries
# would be rewritten by beat on every start: keep it for fixed schedules only.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}
PERIODIC_TASKS: dict[str, dict] = {}
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
# The dashboard's order ticket asks for a confirmation above this estimated notional (account's base currency).
DASHBOARD_CONFIRM_NOTIONAL = env.str("DASHBOARD_CONFIRM_NOTIONAL", default="25000")
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

# --- KIS adapter ----------------------------------------------------------------
# Pages one paged KIS query may take (balance, daily orders); past it the query
# fails rather than answer a cut list.
KIS_MAX_PAGES = env.int("KIS_MAX_PAGES", default=50)

# --- Broker credentials ---------------------------------------------------------
# Comma-separated Fernet keys, newest first; older keys still decrypt.
BROKER_ENCRYPTION_KEYS = env.list("BROKER_ENCRYPTION_KEYS")

# --- Brokers: hosts, tokens, pacing ----------------------------------------------
# KIS Open API hosts per environment. The defaults are KIS's real hosts, the
# same literals as brokers/kis/protocol.py (settings import no app; a test
# checks that both agree). The demo points them at the fake KIS server.
KIS_PAPER_REST_URL = env.str("KIS_PAPER_REST_URL", default="https://openapivts.koreainvestment.com:29443")
KIS_PAPER_WS_URL = env.str("KIS_PAPER_WS_URL", default="ws://ops.koreainvestment.com:31000")
KIS_LIVE_REST_URL = env.str("KIS_LIVE_REST_URL", default="https://openapi.koreainvestment.com:9443")
KIS_LIVE_WS_URL = env.str("KIS_LIVE_WS_URL", default="ws://ops.koreainvestment.com:21000")
# Requests per second per app key (KIS's published limits), and how many may go
# at once. Burst 1 spaces requests evenly, so no one-second window KIS counts
# ever holds more than the rate; a larger burst can cross it at window edges.
KIS_RATE_LIVE = env.float("KIS_RATE_LIVE", default=20.0)
KIS_RATE_PAPER = env.float("KIS_RATE_PAPER", default=2.0)
KIS_RATE_BURST = env.int("KIS_RATE_BURST", default=1)
# Seconds a caller waits for another process issuing a broker token before 503.
BROKER_TOKEN_LOCK_WAIT = env.float("BROKER_TOKEN_LOCK_WAIT", default=15.0)
# Minutes before expiry a broker token is renewed (callers keep using the old one meanwhile).
BROKER_TOKEN_REFRESH_MARGIN = env.float("BROKER_TOKEN_REFRESH_MARGIN", default=10.0)
# Seconds for every HTTP request to a broker (connect and read).
BROKER_HTTP_TIMEOUT = env.float("BROKER_HTTP_TIMEOUT", default=10.0)
# The CCXT pass-through (brokers/ccxt_passthrough.py): seconds a whole call may take
# (each HTTP request to the exchange is bounded by BROKER_HTTP_TIMEOUT), the threads
# running calls per process, and the pace per account when the exchange declares no
# rate limit (calls per second, burst).
CCXT_PASSTHROUGH_TIMEOUT = env.float("CCXT_PASSTHROUGH_TIMEOUT", default=25.0)
CCXT_PASSTHROUGH_WORKERS = env.int("CCXT_PASSTHROUGH_WORKERS", default=8)
CCXT_PASSTHROUGH_RATE = env.float("CCXT_PASSTHROUGH_RATE", default=10.0)
CCXT_PASSTHROUGH_BURST = env.int("CCXT_PASSTHROUGH_BURST", default=5)
# The CCXT ticker feed (brokers/ccxt/feed.py, REST polling): seconds between polls of a
# venue, symbols per poll at most, seconds between re-reads of the accounts' symbols in use
# (held, working orders) and of the accounts.
CCXT_FEED_INTERVAL = env.float("CCXT_FEED_INTERVAL", default=2.0)
CCXT_FEED_MAX_SYMBOLS = env.int("CCXT_FEED_MAX_SYMBOLS", default=100)
CCXT_FEED_IN_USE_REFRESH = env.float("CCXT_FEED_IN_USE_REFRESH", default=60.0)
CCXT_FEED_RELOAD_INTERVAL = env.float("CCXT_FEED_RELOAD_INTERVAL", default=30.0)
# Stream tickers through ccxt.pro's WebSocket client where the exchange has watchTicker
# (brokers/ccxt/stream.py); off: every exchange is polled.
CCXT_FEED_WEBSOCKET = env.bool("CCXT_FEED_WEBSOCKET", default=True)
# Seconds at least between two changes of a stream's symbols (each opens connections).
CCXT_FEED_RESUBSCRIBE_MIN = env.float("CCXT_FEED_RESUBSCRIBE_MIN", default=5.0)

# Zerodha Kite Connect: REST root, login page and ticker (the demo and the
# tests point them at the fake Kite server), requests per second per api_key
# (Kite's published limits: orders 10/s, historical candles 3/s, others 10/s)
# and how long the signed login state stays good (seconds).
KITE_API_URL = env.str("KITE_API_URL", default="https://api.kite.trade")
KITE_LOGIN_URL = env.str("KITE_LOGIN_URL", default="https://kite.zerodha.com/connect/login")
KITE_TICKER_URL = env.str("KITE_TICKER_URL", default="wss://ws.kite.trade")
KITE_RATE_ORDERS = env.float("KITE_RATE_ORDERS", default=10.0)
KITE_RATE_HISTORICAL = env.float("KITE_RATE_HISTORICAL", default=3.0)
KITE_RATE_OTHER = env.float("KITE_RATE_OTHER", default=10.0)
KITE_LOGIN_STATE_MAX_AGE = env.int("KITE_LOGIN_STATE_MAX_AGE", default=600)
# Seconds between imports of Kite's instrument master by beat (a day).
KITE_INSTRUMENTS_INTERVAL = env.float("KITE_INSTRUMENTS_INTERVAL", default=86400.0)

# --- Live broker feeds (marketdata/feeds/registry.py, brokers/kis/ws.py) -------------
# The loop polling every registered broker feed (the marketdata process in
# production, in-process on the embedded default); off: no broker connects.
BROKER_FEEDS_ENABLED = env.bool("BROKER_FEEDS_ENABLED", default=True)
BROKER_FEEDS_INTERVAL = env.float("BROKER_FEEDS_INTERVAL", default=0.25)
# KIS WebSocket: reconnect back-off (seconds, doubled per failure, with jitter,
# capped) and how often the accounts and instruments it serves are re-read.
KIS_WS_BACKOFF_INITIAL = env.float("KIS_WS_BACKOFF_INITIAL", default=1.0)
KIS_WS_BACKOFF_MAX = env.float("KIS_WS_BACKOFF_MAX", default=60.0)
KIS_WS_RELOAD_INTERVAL = env.float("KIS_WS_RELOAD_INTERVAL", default=30.0)
# Kite ticker (brokers/kite/ticker_feed.py): instruments per connection (Kite: at
# most 3,000), connections per api key (Kite: 3), back-off, re-plan interval and
# the silence (Kite's heartbeat is every second) after which it reconnects.
KITE_TICKER_MAX_TOKENS = env.int("KITE_TICKER_MAX_TOKENS", default=3000)
KITE_TICKER_MAX_CONNECTIONS = env.int("KITE_TICKER_MAX_CONNECTIONS", default=3)
KITE_TICKER_BACKOFF_INITIAL = env.float("KITE_TICKER_BACKOFF_INITIAL", default=1.0)
KITE_TICKER_BACKOFF_MAX = env.float("KITE_TICKER_BACKOFF_MAX", default=60.0)
KITE_TICKER_RELOAD_INTERVAL = env.float("KITE_TICKER_RELOAD_INTERVAL", default=30.0)
KITE_TICKER_READ_TIMEOUT = env.float("KITE_TICKER_READ_TIMEOUT", default=10.0)
# Postback bodies larger than this answer 413 (an order's JSON is ~2 KB).
KITE_POSTBACK_MAX_BYTES = env.int("KITE_POSTBACK_MAX_BYTES", default=64 * 1024)

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
        "oms.api.schema.document_order_links",
        "accounts.schema.document_api_key_links",
        "marketdata.api.schema.udf_quote_values_may_be_empty",
    ],
    # Choice sets sharing a field name get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "BrokerKindEnum": "brokers.models.BrokerKind",
        "SideEnum": "oms.models.Side",
        "OrderStatusEnum": "oms.models.OrderStatus",
        "HealthStatusEnum": ["ok", "degraded"],
        "AccountStatusEnum": "brokers.models.AccountStatus",
        "AccountReadStatusEnum": "brokers.models.ACCOUNT_READ_STATUS_CHOICES",
        "DealKindEnum": "oms.models.DealKind",
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
# The front-end packages come from npm (package.json/package-lock.json, `npm ci` in
# `make run`/`make test`); each package's built files are served under static/vendor/<name>/.
# config.asgi serves static files with WhiteNoise in every mode (daphne and uvicorn): the
# collected, content-hashed names with their gzip copies and a year's immutable cache
# (core.static_files); files not collected yet are found through the finders.
FRONTEND_PACKAGES = {
    "lightweight-charts": BASE_DIR / "node_modules" / "lightweight-charts" / "dist",
    "htmx": BASE_DIR / "node_modules" / "htmx.org" / "dist",
}
STATICFILES_DIRS = [BASE_DIR / "static"] + [(f"vendor/{name}", str(path)) for name, path in FRONTEND_PACKAGES.items() if path.is_dir()]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "core.static_files.HashedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_ALLOW_ALL_ORIGINS = False  # CORS stays django-cors-headers' decision

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
# F&O analytics: an underlying's Instrument.risk_free_rate / dividend_yield, when null, default to these
# (annual, continuous, decimals); the chain stream recomputes at most once per FO_CHAIN_STREAM_INTERVAL seconds.
FO_RISK_FREE_RATE = env.float("FO_RISK_FREE_RATE", default=0.065)
FO_DIVIDEND_YIELD = env.float("FO_DIVIDEND_YIELD", default=0.0)
FO_CHAIN_STREAM_INTERVAL = env.float("FO_CHAIN_STREAM_INTERVAL", default=1.0)
FO_SIGNAL_THRESHOLD_PERCENT = env.float("FO_SIGNAL_THRESHOLD_PERCENT", default=0.1)
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
PERIODIC_TASKS.update(
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

# --- Account sync and connection health --------------------------------------------------
# Every active real account is synced (funds, holdings, positions, open orders,
# the day's fills) every ACCOUNT_SYNC_INTERVAL seconds, one at a time per account;
# a sync still running after ACCOUNT_SYNC_TIME_LIMIT seconds is stopped (its lock
# lasts as long). Broker tokens are refreshed ahead of expiry every
# BROKER_TOKEN_REFRESH_INTERVAL seconds. These are the defaults of the periodic
# tasks created on the first migrate; change them afterwards in the admin.
ACCOUNT_SYNC_INTERVAL = env.float("ACCOUNT_SYNC_INTERVAL", default=300.0)
ACCOUNT_SYNC_TIME_LIMIT = env.float("ACCOUNT_SYNC_TIME_LIMIT", default=240.0)
BROKER_TOKEN_REFRESH_INTERVAL = env.float("BROKER_TOKEN_REFRESH_INTERVAL", default=300.0)
PERIODIC_TASKS.update(
    {
        "oms.accounts_sync_all": {
            "task": "oms.accounts_sync_all",
            "schedule": ACCOUNT_SYNC_INTERVAL,
            "options": {"expires": ACCOUNT_SYNC_INTERVAL},
        },
        "brokers.tokens_refresh": {
            "task": "brokers.tokens_refresh",
            "schedule": BROKER_TOKEN_REFRESH_INTERVAL,
            "options": {"expires": BROKER_TOKEN_REFRESH_INTERVAL},
        },
        # Kite's instrument master, once a day (README, "Kite accounts").
        "brokers.kite_instruments_import": {
            "task": "brokers.kite_instruments_import",
            "schedule": KITE_INSTRUMENTS_INTERVAL,
            "options": {"expires": KITE_INSTRUMENTS_INTERVAL},
        },
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

# --- Demo brokers (README, "KIS accounts") --------------------------------------------
# `make run` (manage.py serve) with DEMO_FAKE_BROKERS also starts the fake KIS
# server and gives the demo trader a KIS paper account against it; the KIS paper
# URLs of that run point at the fake. Its ports (0: free ones).
DEMO_FAKE_BROKERS = env.bool("DEMO_FAKE_BROKERS", default=False)
DEMO_KIS_REST_PORT = env.int("DEMO_KIS_REST_PORT", default=0)
DEMO_KIS_WS_PORT = env.int("DEMO_KIS_WS_PORT", default=0)
# The fake Kite's REST/login and ticker ports (0: free ones).
DEMO_KITE_PORT = env.int("DEMO_KITE_PORT", default=0)
DEMO_KITE_TICKER_PORT = env.int("DEMO_KITE_TICKER_PORT", default=0)

# --- Workspaces and watchlists (README, "Workspaces and watchlists") -------------------
WORKSPACES_MAX_PER_USER = env.int("WORKSPACES_MAX_PER_USER", default=50)
WATCHLISTS_MAX_PER_USER = env.int("WATCHLISTS_MAX_PER_USER", default=50)
WATCHLIST_MAX_ITEMS = env.int("WATCHLIST_MAX_ITEMS", default=200)
