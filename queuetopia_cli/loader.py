"""Import the APP argument (`module:attribute`) the way uvicorn does."""

from __future__ import annotations

import importlib
import os
import sys

from queuetopia import Queuetopia


class AppError(Exception):
    """APP could not be loaded; the message is one line for a person."""


def load_app(spec: str, dsn: str | None = None) -> Queuetopia:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppError(f"APP must look like 'module:attribute', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppError(f"cannot import module {module_name!r}") from exc
        raise AppError(f"importing {module_name!r} failed: {_one_line(exc)}") from exc
    except Exception as exc:
        raise AppError(f"importing {module_name!r} failed: {_one_line(exc)}") from exc
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise AppError(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not isinstance(target, Queuetopia):
        raise AppError(f"{spec} is a {type(target).__name__}, not a Queuetopia")
    if dsn:
        target.dsn = dsn
    return target


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
