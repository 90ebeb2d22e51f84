"""One place that turns failures into a one-line message and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from queuetopia.errors import QueuetopiaError, ValidationError, redact

from .loader import AppError

EXIT_FAILURE = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    print(f"error: {redact(message)}", file=sys.stderr)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors a person can fix print one line to stderr, never a traceback: exit code 2
    for a bad APP or bad input, 1 when the work could not be done."""
    try:
        yield
    except AppError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except ValidationError as exc:
        raise fail(_first_line(exc), EXIT_USAGE) from None
    except QueuetopiaError as exc:
        raise fail(_first_line(exc)) from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
