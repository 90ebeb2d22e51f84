"""Queuetopia as a backend of Django's task framework (`django.tasks`, or the
`django-tasks` backport before Django 6): set TASKS["default"]["BACKEND"] to
"queuetopia.contrib.django.tasks.QueuetopiaBackend" (docs/django.md)."""

from .backend import QueuetopiaBackend

__all__ = ["QueuetopiaBackend"]
