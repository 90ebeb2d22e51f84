"""Checks on names and params that run before anything is written."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from .errors import ValidationError

MAX_NAME_LENGTH = 255
DEFAULT_MAX_PARAMS_BYTES = 1024 * 1024
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
MAX_REASON_BYTES = 1024  # a cancel reason (docs/decisions.md)
# PostgreSQL's jsonb parser and Python's json both recurse; stay well inside both.
MAX_DEPTH = 100


def check_name(kind: str, value: object) -> str:
    """Return `value` if it is a valid scope, queue or action name; raise otherwise."""
    if not isinstance(value, str):
        raise ValidationError(f"{kind} name must be a string, not {type(value).__name__}", (kind,))
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise ValidationError(
            f"{kind} name must be 1 to {MAX_NAME_LENGTH} characters, got {len(value)}", (kind,)
        )
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValidationError(
                f"{kind} name must not contain control characters (found {char!r})", (kind,)
            )
    return value


def check_concurrency(value: object) -> int:
    """How many jobs a worker runs at once: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"concurrency must be an int >= 1, got {value!r}")
    return value


def check_prefetch(value: object, concurrency: int) -> int:
    """How many jobs a worker may claim ahead of its free slots: an int >= 0, or None
    for as many as its concurrency (docs/deploying.md, "Claiming ahead")."""
    if value is None:
        return concurrency
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"prefetch must be an int >= 0 or None, got {value!r}")
    return value


def check_text(kind: str, value: object, max_bytes: int | None = None) -> str:
    """Return `value` if PostgreSQL can store it as text (a cancel reason, say), in
    at most `max_bytes` bytes of UTF-8 if given."""
    if not isinstance(value, str):
        raise ValidationError(f"{kind} must be a string, not {type(value).__name__}", (kind,))
    _check_text(kind, value, what=kind)
    if max_bytes is not None and len(value) > max_bytes // 4:
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            raise ValidationError(f"{kind} is {size} bytes, over the limit of {max_bytes}", (kind,))
    return value


def params_json(params: dict[str, Any], max_bytes: int = DEFAULT_MAX_PARAMS_BYTES) -> str:
    """Serialise params for storage, naming the field that PostgreSQL could not store."""
    for field, value in params.items():
        if not isinstance(field, str):
            raise ValidationError(f"param names must be strings, got {field!r}", (str(field),))
        _check_text(field, field)
        check_storable(field, value)
    text = json.dumps(params, ensure_ascii=False, allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ValidationError(f"params are {size} bytes of JSON, over the limit of {max_bytes}")
    return text


def check_storable(field: str, value: Any) -> None:
    """Raise ValidationError unless PostgreSQL can store `value` as jsonb."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValidationError(f"param {field!r} is nested deeper than {MAX_DEPTH}", (field,))
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValidationError(f"param {field!r}: {item} is not valid JSON", (field,))
        elif isinstance(item, str):
            _check_text(field, item)
        elif isinstance(item, list | tuple):
            stack.extend((sub, depth + 1) for sub in item)
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise ValidationError(f"param {field!r}: key {key!r} is not a string", (field,))
                _check_text(field, key)
                stack.append((sub, depth + 1))
        else:
            raise ValidationError(
                f"param {field!r}: {type(item).__name__} is not JSON-serialisable", (field,)
            )


def _check_text(field: str, text: str, what: str | None = None) -> None:
    what = what or f"param {field!r}"
    if "\x00" in text:
        raise ValidationError(f"{what}: NUL characters cannot be stored", (field,))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{what}: text is not valid unicode", (field,)) from exc
