"""Sensitive params: the dotted paths an action marks secret, masked wherever params are
shown and scrubbed out of error text (docs/security.md).

A path names keys through nested objects ("card.number"); lists are looked through,
so "cards.number" is the number of every card. JOB_LIST walks params the same way in
SQL, so that a search never matches a sensitive value."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .errors import ValidationError

MASK = "***"
# Shorter values are not scrubbed out of error text: replacing every "1" or "ok" of a
# traceback would destroy it and hide little.
MIN_SCRUBBED = 4


def check_paths(paths: object) -> frozenset[str]:
    """`paths` as a set of dotted paths; raise unless each is a string of non-empty keys."""
    if isinstance(paths, str) or not isinstance(paths, Iterable):
        raise ValidationError("sensitive must be a tuple of param names or dotted paths")
    checked = set()
    for path in paths:
        if not isinstance(path, str) or not all(path.split(".")):
            raise ValidationError(f"sensitive path {path!r} must be keys joined by dots")
        checked.add(path)
    return frozenset(checked)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def mask(params: Mapping[str, Any], paths: frozenset[str]) -> dict[str, Any]:
    """A copy of `params` with the value at every sensitive path replaced by '***'."""
    if not paths:
        return dict(params)
    return {k: MASK if k in paths else _mask(v, k, paths) for k, v in params.items()}


def _mask(value: Any, path: str, paths: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            k: MASK if _join(path, k) in paths else _mask(v, _join(path, k), paths)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask(item, path, paths) for item in value]
    return value


def secret_values(params: Mapping[str, Any], paths: frozenset[str]) -> set[str]:
    """The text of every value under a sensitive path, as an error message may show it
    (str and repr of strings, each scalar of a masked object or list)."""
    found: set[str] = set()
    for value in _under_paths(params, "", paths):
        for leaf in _leaves(value):
            found.add(str(leaf))
            if isinstance(leaf, str):
                found.add(repr(leaf))
    return {text for text in found if len(text) >= MIN_SCRUBBED}


def _under_paths(value: Any, path: str, paths: frozenset[str]) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if _join(path, k) in paths:
                yield v
            else:
                yield from _under_paths(v, _join(path, k), paths)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _under_paths(item, path, paths)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield value


def scrub(text: str, secrets: set[str]) -> str:
    """`text` with every occurrence of each secret replaced by '***', longest first (so
    a secret that contains another is replaced whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def is_sensitive(location: Iterable[str | int], paths: frozenset[str]) -> bool:
    """Whether a pydantic error location (keys and list indexes) is at, under or above a
    sensitive path: its message may quote the value, so it must not be shown."""
    dotted = ".".join(str(part) for part in location if isinstance(part, str))
    return any(
        dotted == path or dotted.startswith(path + ".") or path.startswith(dotted + ".")
        for path in paths
    )
