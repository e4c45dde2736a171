"""A Django project configured as README.md's Django recipe says (LOGGING + MIDDLEWARE);
the sink and the policy come from WIDE_LOGGING_* environment variables."""

from __future__ import annotations

import os

SECRET_KEY = "test-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "apps.django_site.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MIDDLEWARE = [
    "wide_logging.django.WideEventMiddleware",  # first: it times everything after it
    "django.middleware.common.CommonMiddleware",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "wide": {
            "class": "wide_logging.WideEventHandler",
            "level": "INFO",
            "service": {"name": "django-shop", "version": "1.0.0"},
        }
    },
    "root": {"handlers": ["wide"], "level": "INFO"},
}
if os.environ.get("DJANGO_SITE_OWN_LOGGING") == "0":
    # In the test process the tests build their own handlers: Django must not add one.
    LOGGING_CONFIG = None
