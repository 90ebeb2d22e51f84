"""One place that turns failures into a one-line message and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from queuetopia.errors import QueuetopiaError, SchemaError, ValidationError, redact

from .loader import AppError

EXIT_FAILURE = 1
DJANGO_APP = "queuetopia.contrib.django"
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    print(f"error: {redact(message)}", file=sys.stderr)
    return typer.Exit(code)


@contextmanager
def user_errors(app: str | None = None) -> Iterator[None]:
    """Errors a person can fix print one line to stderr, never a traceback: exit code 2
    for a bad APP or bad input, 1 when the work could not be done. A missing schema's
    fix names `app`, the APP the command was given, so it runs as printed."""
    try:
        yield
    except AppError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except ValidationError as exc:
        raise fail(_first_line(exc), EXIT_USAGE) from None
    except SchemaError as exc:
        raise fail(exc.advice(_migrate_command(app)) if app else str(exc)) from None
    except QueuetopiaError as exc:
        raise fail(_first_line(exc)) from None


def _migrate_command(app: str) -> str:
    """What installs the schema, as this user types it: in a Django project that
    installs queuetopia.contrib.django (`manage.py queuetopia`), Django's own migrate
    (docs/django.md). Django is looked up, never imported."""
    registry = getattr(sys.modules.get("django.apps"), "apps", None)
    if registry is not None and registry.ready and registry.is_installed(DJANGO_APP):
        return "python manage.py migrate"
    return f"queuetopia migrate {app}"


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
