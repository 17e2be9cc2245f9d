"""Settings for webengine, every one from an environment variable with a typed, fail-fast helper.

A bad value stops the process at start with a message naming the variable, rather than running
with a guess. `X_FILE` is read before `X` for secrets, so that they can come from a file.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    """Return a boolean variable; anything but the usual spellings of true and false is an error."""
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected one of 1/0, true/false, yes/no, on/off")


def envint(name: str, default: int, minimum: int = 0, maximum: int = 2**31) -> int:
    """Return an integer variable within [minimum, maximum]."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected an integer") from None
    if not minimum <= number <= maximum:
        raise ImproperlyConfigured(f"{name}={number}: expected a value from {minimum} to {maximum}")
    return number


def envlist(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated list variable, with blanks dropped."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def envsecret(name: str) -> str | None:
    """Return a secret from the file named by `<name>_FILE`, else from `<name>`, else None."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as err:
            raise ImproperlyConfigured(f"{name}_FILE={path!r}: {err.strerror}") from err
    return os.environ.get(name) or None


def envpath(name: str, default: str) -> Path:
    """Return an absolute path variable."""
    value = os.environ.get(name, default)
    if not value or not os.path.isabs(value):
        raise ImproperlyConfigured(f"{name}={value!r}: expected an absolute path")
    return Path(value)


def _persistent_secret_key(root: Path) -> str:
    """Return the secret key kept in the state root, generating it (mode 0600) on first run."""
    path = root / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o711)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    except OSError as err:
        raise ImproperlyConfigured(f"SECRET_KEY: cannot keep a generated key in {path}: {err.strerror}") from err
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


#
# Core
#

WEBENGINE_ROOT = envpath("WEBENGINE_ROOT", "/var/lib/webengine")
DEBUG = envbool("DEBUG", False)
SECRET_KEY = envsecret("SECRET_KEY") or _persistent_secret_key(WEBENGINE_ROOT)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
NODE_NAME = os.environ.get("NODE_NAME") or socket.gethostname()

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "containers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webengine.urls"
ASGI_APPLICATION = "webengine.asgi.application"
WSGI_APPLICATION = None

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

#
# Database
#

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{WEBENGINE_ROOT / 'webengine.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except ValueError as err:
    raise ImproperlyConfigured(f"DATABASE_URL: {err}") from err
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and the node agent write concurrently: wait for the lock instead of failing at once.
    # In WAL mode (containers.apps puts the file in it), synchronous=NORMAL makes a commit cost no
    # fsync: a crash of the process loses nothing; a power cut may lose the last commits.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#
# Redis: Celery broker and result backend, and the Channels layer
#

# The private redis-server that `make run` starts listens on a root-only unix socket: a TCP port
# would let any local user queue tasks for the root node agent.
REDIS_URL = os.environ.get("REDIS_URL") or f"unix://{WEBENGINE_ROOT / 'run' / 'redis.sock'}"
_redis = urlsplit(REDIS_URL)
if _redis.scheme not in ("redis", "rediss", "unix"):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r}: expected a redis://, rediss:// or unix:// URL")
# Kombu spells a unix socket redis+socket://; redis-py and channels-redis spell it unix://.
_CELERY_REDIS_URL = REDIS_URL.replace("unix://", "redis+socket://", 1) if _redis.scheme == "unix" else REDIS_URL

CELERY_BROKER_URL = _CELERY_REDIS_URL
CELERY_RESULT_BACKEND = _CELERY_REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = f"node.{NODE_NAME}"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL}]},
    },
}

#
# Engine
#

CONTAINERS_ENGINE = {
    "ROOT": WEBENGINE_ROOT,
    "SNAPSHOTTER": os.environ.get("WEBENGINE_SNAPSHOTTER", "overlay"),
    "CGROUP_PARENT": os.environ.get("WEBENGINE_CGROUP_PARENT", "webengine"),
    "RUNTIME": os.environ.get("WEBENGINE_RUNTIME", "native"),
    # Seconds a standby container made for `docker run` waits to be adopted; 0 makes none.
    "STANDBY_TTL": envint("WEBENGINE_STANDBY_TTL", 120, minimum=0, maximum=86400),
}
if CONTAINERS_ENGINE["RUNTIME"] not in ("native", "runc", "crun"):
    raise ImproperlyConfigured(f"WEBENGINE_RUNTIME={CONTAINERS_ENGINE['RUNTIME']!r}: expected native, runc or crun")
if CONTAINERS_ENGINE["SNAPSHOTTER"] not in ("overlay", "native"):
    raise ImproperlyConfigured(
        f"WEBENGINE_SNAPSHOTTER={CONTAINERS_ENGINE['SNAPSHOTTER']!r}: expected overlay or native"
    )

#
# Builds: where uploaded contexts wait for their node, and the largest context accepted
#

BUILD_CONTEXT_DIR = WEBENGINE_ROOT / "build-contexts"
BUILD_CONTEXT_LIMIT = envint("WEBENGINE_BUILD_CONTEXT_LIMIT", 1 << 30, minimum=1, maximum=1 << 40)

#
# Containers: host directories below which anyone who may run containers can bind-mount (site admins mount any)
#

BIND_MOUNT_ROOTS = envlist("WEBENGINE_BIND_MOUNT_ROOTS", [])
if any(not os.path.isabs(root) for root in BIND_MOUNT_ROOTS):
    raise ImproperlyConfigured(f"WEBENGINE_BIND_MOUNT_ROOTS={','.join(BIND_MOUNT_ROOTS)!r}: expected absolute paths")

#
# Docker Engine API (`manage.py dockerapi`): a root-only unix socket, and TCP on 127.0.0.1 with a token
#

DOCKER_API_SOCKET = envpath("WEBENGINE_DOCKER_SOCKET", "/run/webengine/docker.sock")
DOCKER_API_PORT = envint("WEBENGINE_DOCKER_PORT", 2375, minimum=0, maximum=65535)

#
# REST API (/api/v1/): sessions with CSRF or bearer tokens, scoped lists, one error shape; schema at /api/schema/
#

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # The token first: its WWW-Authenticate header makes DRF answer anonymous requests 401, not 403.
        "containers.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["containers.api.permissions.IsAuthenticatedWritable"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "containers.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "webengine API",
    "DESCRIPTION": "Containers, images, builds and jobs of your teams; teams, members, tokens and the audit log.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed drf-spectacular-sidecar package: the docs work with no network.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ContainerStatusEnum": "containers.choices.ContainerStatus",
        "BuildStatusEnum": "containers.choices.BuildStatus",
        "JobStatusEnum": "containers.choices.JobStatus",
    },
}

#
# Auth, i18n, static files
#

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Ours, and the front-end libraries that `make install` puts in node_modules from package-lock.json
# (never copied into the repository), each under vendor/<name>/.
_NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/xterm", _NODE_MODULES / "@xterm" / "xterm"),
    ("vendor/xterm-addon-fit", _NODE_MODULES / "@xterm" / "addon-fit" / "lib"),
    ("vendor/uplot", _NODE_MODULES / "uplot" / "dist"),
]
# WhiteNoise serves the static files from where the finders find them, so Daphne serves the whole
# site with no collectstatic step and no second server.
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
