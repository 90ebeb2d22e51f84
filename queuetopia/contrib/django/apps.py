"""The Django application: points the topia of the QUEUETOPIA setting at Django."""

from __future__ import annotations

from django.apps import AppConfig


class QueuetopiaConfig(AppConfig):
    name = "queuetopia.contrib.django"
    label = "queuetopia"
    verbose_name = "Queuetopia"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import conf

        # Models are loaded by now, so the module of the topia may import them.
        if conf.app_spec() is not None:
            conf.configure(conf.get_topia())
