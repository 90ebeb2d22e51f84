"""The Django application: points the topia of the QUEUETOPIA setting at Django."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.utils.module_loading import import_string


class QueuetopiaConfig(AppConfig):
    name = "queuetopia.contrib.django"
    label = "queuetopia"
    verbose_name = "Queuetopia"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import conf

        # Models are loaded by now, so the module of the topia may import them.
        if conf.app_spec() is None:
            return
        topia = conf.get_topia()
        conf.configure(topia)
        if uses_task_backend():
            # So that `manage.py queuetopia worker` runs Django tasks (docs/django.md).
            from .tasks.runner import register

            register(topia)


def uses_task_backend() -> bool:
    """Does a backend of the TASKS setting run on queuetopia? A backend that cannot be
    imported counts as no: Django's task framework reports it when it is used."""
    configured = getattr(settings, "TASKS", None) or {}
    try:
        from .tasks.backend import QueuetopiaBackend
    except ImportError:  # no task framework installed: no backend can be queuetopia's
        return False
    for params in configured.values():
        try:
            backend = import_string(params["BACKEND"])
        except (ImportError, KeyError, TypeError):
            continue
        if isinstance(backend, type) and issubclass(backend, QueuetopiaBackend):
            return True
    return False
