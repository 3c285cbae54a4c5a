"""SynthGen settings shared by every environment. Every knob comes from an environment variable."""

import json
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("SYNTHGEN_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "apps.core",
    "apps.datasets",
    "apps.generators",
    "apps.generation",
    "apps.upkeep",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside CommonMiddleware: sees its APPEND_SLASH redirect, turns Django's HTML error pages under /api/ into JSON.
    "apps.core.middleware.ApiJsonErrorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "synthgen.urls"
WSGI_APPLICATION = "synthgen.wsgi.application"

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

# Database: SQLite by default (embedded), PostgreSQL when DATABASE_URL says so.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker write concurrently: WAL + immediate transactions + a generous lock timeout.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))

# Uploaded and generated files. Served only through views that check the owner (never as static files).
MEDIA_ROOT = Path(os.environ.get("SYNTHGEN_MEDIA_ROOT", BASE_DIR / "media"))
MEDIA_URL = "/media/"


def storage_from_url(url: str) -> dict:
    """STORAGES["default"] for SYNTHGEN_STORAGE_URL (apps/core/storage.py holds the layout).

    ``file://`` (MEDIA_ROOT) or ``file:///abs/path``: a local folder. ``s3://BUCKET?endpoint=http://HOST:PORT
    &region=REGION&prefix=PATH`` (or ``s3://BUCKET/PATH``): an S3 bucket through django-storages;
    credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (else boto3's usual sources).
    """
    from urllib.parse import parse_qs, urlsplit

    from django.core.exceptions import ImproperlyConfigured

    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if parts.scheme == "file":
        options = {"location": parts.netloc + parts.path} if parts.netloc + parts.path else {}
        return {"BACKEND": "apps.core.storage_backends.LocalStorage", "OPTIONS": options}
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ImproperlyConfigured(f"SYNTHGEN_STORAGE_URL={url!r} names no bucket: s3://BUCKET?endpoint=...")
        unknown = set(query) - {"endpoint", "region", "prefix"}
        if unknown:
            raise ImproperlyConfigured(
                f"SYNTHGEN_STORAGE_URL: unknown parameters {sorted(unknown)} (known: endpoint, region, prefix)"
            )
        options = {
            "bucket_name": parts.netloc,
            "endpoint_url": query.get("endpoint") or None,
            "region_name": query.get("region") or os.environ.get("AWS_DEFAULT_REGION") or None,
            "location": (query.get("prefix") or parts.path).strip("/"),
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
        }
        return {"BACKEND": "apps.core.storage_backends.S3Storage", "OPTIONS": options}
    raise ImproperlyConfigured(f"SYNTHGEN_STORAGE_URL={url!r}: use file:// or s3://BUCKET?endpoint=...")


# Where every file is kept: file:// (a folder, MEDIA_ROOT; the default) or s3://BUCKET?endpoint=... .
SYNTHGEN_STORAGE_URL = os.environ.get("SYNTHGEN_STORAGE_URL", "file://")
STORAGES = {
    "default": storage_from_url(SYNTHGEN_STORAGE_URL),
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# A stage whose storage cannot be reached is retried this many times, after 1x, 2x, 4x ... this many seconds
# (at most 5 minutes apart), then the run fails with a message that names the storage.
SYNTHGEN_STORAGE_RETRIES = env_int("SYNTHGEN_STORAGE_RETRIES", 5)
SYNTHGEN_STORAGE_RETRY_SECONDS = env_int("SYNTHGEN_STORAGE_RETRY_SECONDS", 10)
# Local scratch of this host: each stage's inputs and outputs while it runs (removed when it ends).
SYNTHGEN_WORK_DIR = Path(os.environ.get("SYNTHGEN_WORK_DIR", VAR_DIR / "work"))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "core:home"
LOGOUT_REDIRECT_URL = "core:home"

# Uploads: files over 2.5 MB stream to temporary files; many files per request are allowed on purpose.
# Django's own cap leaves room for the image files plus one zip; the upload service checks the
# image count itself, so a request just over the limit gets a message that says what to do.
SYNTHGEN_MAX_FILES_PER_REQUEST = env_int("SYNTHGEN_MAX_FILES_PER_REQUEST", 1000)
DATA_UPLOAD_MAX_NUMBER_FILES = SYNTHGEN_MAX_FILES_PER_REQUEST + 1
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
SYNTHGEN_MAX_FILE_BYTES = env_int("SYNTHGEN_MAX_FILE_BYTES", 30 * 1024 * 1024)
SYNTHGEN_INGEST_THREADS = env_int(
    "SYNTHGEN_INGEST_THREADS", 0
)  # threads that decode uploads; 0: one per CPU core (at most 8)
SYNTHGEN_MAX_IMAGE_PIXELS = env_int("SYNTHGEN_MAX_IMAGE_PIXELS", 50_000_000)
SYNTHGEN_MAX_ZIP_MEMBERS = env_int("SYNTHGEN_MAX_ZIP_MEMBERS", 5000)
SYNTHGEN_MAX_ZIP_TOTAL_BYTES = env_int("SYNTHGEN_MAX_ZIP_TOTAL_BYTES", 2 * 1024**3)
SYNTHGEN_MIN_TRAINING_IMAGES = env_int("SYNTHGEN_MIN_TRAINING_IMAGES", 20)
SYNTHGEN_MAX_GENERATION_COUNT = env_int("SYNTHGEN_MAX_GENERATION_COUNT", 10_000)
# The quality report after training: generated images it measures, classifier seeds and steps.
SYNTHGEN_QUALITY_SAMPLES = env_int("SYNTHGEN_QUALITY_SAMPLES", 500)
SYNTHGEN_QUALITY_SEEDS = [int(s) for s in env_list("SYNTHGEN_QUALITY_SEEDS", "0,1,2")]
SYNTHGEN_QUALITY_CLASSIFIER_STEPS = env_int("SYNTHGEN_QUALITY_CLASSIFIER_STEPS", 300)
# A running stage without a heartbeat for this long is taken to be abandoned by a dead worker.
SYNTHGEN_STALE_RUN_SECONDS = env_int("SYNTHGEN_STALE_RUN_SECONDS", 300)
# Advanced: JSON {"<kind>": {config key: value}} merged over every preset's config, e.g.
# '{"dcgan": {"total_steps": 50}}'. The tests use it to train tiny models.
SYNTHGEN_TRAINING_OVERRIDES = json.loads(os.environ.get("SYNTHGEN_TRAINING_OVERRIDES", "{}"))

# A worker that trains times a few steps of each model shape the presets pick on its device, once per
# installation and device (low-priority tasks, seconds each): the wizard's time estimates before any run.
SYNTHGEN_MEASURE_STEP_COSTS = env_bool("SYNTHGEN_MEASURE_STEP_COSTS", True)

# Celery. Default broker needs no server: kombu's filesystem transport in var/broker. Production: Redis
# (redis://) or RabbitMQ (amqp://); RabbitMQ's consumer_timeout is a server setting (README).
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 12 * 3600),  # > the longest training (Redis)
}
# RabbitMQ only: AMQP heartbeats off. A solo-pool worker cannot send them while a task trains (its one thread
# is busy), so RabbitMQ would close its connection after a minute or two and hand the task to another worker.
CELERY_BROKER_HEARTBEAT = env_int("CELERY_BROKER_HEARTBEAT", 0)
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        {
            "data_folder_in": str(BROKER_DIR / "queue"),
            "data_folder_out": str(BROKER_DIR / "queue"),
            "control_folder": str(BROKER_DIR / "control"),
        }
    )
    for _folder in ("queue", "control"):
        os.makedirs(BROKER_DIR / _folder, exist_ok=True)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True  # a crashed worker's task is delivered again and resumes from its checkpoint
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "generators.train": {"queue": "gpu"},
    "generators.evaluate": {"queue": "gpu"},
    "generation.generate": {"queue": "gpu"},
}
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-runs": {"task": "generators.sweep_stale_runs", "schedule": env_int("SYNTHGEN_SWEEP_SECONDS", 60)},
    # The storage check (manage.py check_storage without --repair): daily; it logs what it finds, the admin shows it.
    "check-storage": {"task": "upkeep.check_storage", "schedule": env_int("SYNTHGEN_STORAGE_CHECK_SECONDS", 86400)},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.PageNumberPagination",
    # Every answer is JSON (no browsable HTML API; the interactive documentation is Swagger UI at /api/docs/).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    # Views name their scope (throttle_scope = "uploads" / "generation") and pick the actions it applies to.
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "uploads": os.environ.get("SYNTHGEN_UPLOAD_THROTTLE", "120/min"),
        "generation": os.environ.get("SYNTHGEN_GENERATION_THROTTLE", "120/min"),
    },
}

# The cache holds the API throttle counters. The default is per process; with several web
# processes set SYNTHGEN_CACHE_URL (e.g. redis://127.0.0.1:6379/1) so the rates hold across them.
_CACHE_URL = os.environ.get("SYNTHGEN_CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL}
    if _CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

SPECTACULAR_SETTINGS = {
    "TITLE": "SynthGen API",
    "DESCRIPTION": (
        "Upload images, train generators, generate synthetic images.\n\n"
        "Authenticate with `Authorization: Token <key>` (POST /api/auth/token/) or the web session. "
        "Lists are paginated (`?page=` from 1 to the last page, 50 a page; past it: 404); generators "
        "filter by `?kind=` and `?status=`. Uploads are multipart; other bodies are JSON, with the types "
        "given here (another media type: 415). "
        "Bad input gets 400 with a list of messages per field, a missing token 401, another user's "
        "object 403 (changing a shared generator) or 404 (everything else). Uploads and generation "
        "are throttled per user: over the limit the answer is 429 with a Retry-After header. Every answer "
        "is JSON; a path under /api/ that matches no endpoint is a 404."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,  # file fields show as binary uploads in request bodies
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.schema.document_error_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
