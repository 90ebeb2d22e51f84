"""A small project whose tasks run through queuetopia: Django 6's django.tasks, or
Django 5.2 with the django-tasks backport (tests/test_django_tasks*.py)."""

import os

import django
from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", ""),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    }
}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "queuetopia.contrib.django"]
if django.VERSION < (6,):
    INSTALLED_APPS.append("django_tasks")
QUEUETOPIA = {"APP": "tasksite.topia:topia"}
_BACKEND = "queuetopia.contrib.django.tasks.QueuetopiaBackend"
TASKS = {
    "default": {"BACKEND": _BACKEND, "QUEUES": [], "OPTIONS": {"max_attempts": 1}},
    # Quick retries: a failed attempt is tried again half a second later.
    "retrying": {
        "BACKEND": _BACKEND,
        "QUEUES": [],
        "OPTIONS": {"max_attempts": 3, "max_backoff": 0.5},
    },
    "hasty": {"BACKEND": _BACKEND, "QUEUES": [], "OPTIONS": {"max_attempts": 1, "timeout": 0.5}},
}
SECRET_KEY = "only-for-tests"
USE_TZ = True
TIME_ZONE = "UTC"
