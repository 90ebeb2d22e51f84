"""Settings of the Django example: the shop's orders app on PostgreSQL."""

import os

from psycopg.conninfo import conninfo_to_dict

DATABASE_URL = os.environ["DATABASE_URL"]  # one database for the app and its queues
_db = conninfo_to_dict(DATABASE_URL)
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
INSTALLED_APPS = ["orders"]
ROOT_URLCONF = "mysite.urls"
SECRET_KEY = os.environ.get("SECRET_KEY", "only-for-the-example")
USE_TZ = True
TIME_ZONE = "UTC"
