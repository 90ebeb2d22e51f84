"""Settings of the Django example: the shop's orders app on PostgreSQL."""

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["DATABASE_URL"])  # one database for the app and its queues
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3
        "NAME": _db.get("dbname", ""),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    }
}
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "queuetopia.contrib.django",  # migrations, `manage.py queuetopia`, admin pages
    "orders",
]
QUEUETOPIA = {"APP": "orders.tasks:topia"}  # the topia, as module:attribute
# Django's task framework (@task) on the same topia: a task's queue_name is its queue.
TASKS = {
    "default": {
        "BACKEND": "queuetopia.contrib.django.tasks.QueuetopiaBackend",
        "QUEUES": [],  # any queue name: one queue per customer
        "OPTIONS": {"max_attempts": 5, "timeout": 30},  # each task's job's defaults
    }
}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "mysite.urls"
SECRET_KEY = os.environ.get("SECRET_KEY", "only-for-the-example")
USE_TZ = True
TIME_ZONE = "UTC"
