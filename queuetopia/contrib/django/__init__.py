"""Queuetopia for Django: add "queuetopia.contrib.django" to INSTALLED_APPS.

Django's `migrate` then creates and upgrades the tables, `manage.py queuetopia ...` runs
the command line with Django's settings, `.delay()` inside `transaction.atomic()` joins
Django's transaction, and the admin lists queues and jobs (docs/django.md)."""
