"""The worker's entry point: `queuetopia worker orders.worker:topia`.
Django must be set up before the actions' module imports models."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django.setup()

from orders.tasks import topia  # noqa: E402

__all__ = ["topia"]
