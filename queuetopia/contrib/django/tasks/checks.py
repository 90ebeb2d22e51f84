"""The system checks of a QueuetopiaBackend (`manage.py check`): the app, the topia,
the OPTIONS and the QUEUES it needs (docs/django.md)."""

from __future__ import annotations

from django.apps import apps
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured

from queuetopia import ValidationError
from queuetopia.validation import check_name

from ..conf import get_topia
from .framework import BaseTaskBackend
from .options import job_options

APP = "queuetopia.contrib.django"


def backend_checks(backend: BaseTaskBackend) -> list[CheckMessage]:
    where = f"TASKS[{backend.alias!r}]"
    if not apps.is_installed(APP):
        hint = f"add {APP!r} to INSTALLED_APPS"
        return [
            Error(
                f"{where} uses queuetopia, whose app is not installed", hint, id="queuetopia.E001"
            )
        ]
    try:
        topia = get_topia()
    except (ImproperlyConfigured, ImportError) as exc:
        return [Error(f"{where} needs the topia of QUEUETOPIA['APP']: {exc}", id="queuetopia.E002")]
    errors: list[CheckMessage] = []
    try:
        job_options(backend.alias, backend.options, topia)
    except ImproperlyConfigured as exc:
        errors.append(Error(str(exc), id="queuetopia.E003"))
    for queue in sorted(backend.queues, key=repr):
        try:
            check_name("queue", queue)
        except ValidationError as exc:
            errors.append(Error(f"{where}['QUEUES']: {exc}", id="queuetopia.E004"))
    return errors
