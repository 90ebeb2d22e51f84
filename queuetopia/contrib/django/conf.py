"""The QUEUETOPIA setting, the topia it names, and the DSN built from Django's
database settings (docs/django.md)."""

from __future__ import annotations

import contextlib
import importlib
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.signals import connection_created

from queuetopia import Queuetopia, QueuetopiaError
from queuetopia.db.connections import conninfo

from .transactions import atomic_connection

DEFAULTS: dict[str, Any] = {
    "APP": None,  # "module:attribute" of the topia, as the command line takes it
    "DATABASE": "default",  # the Django database whose transactions enqueues join
    "DSN": None,  # None: built from DATABASES[DATABASE]
    "JOIN_ATOMIC": True,  # .delay() inside transaction.atomic() joins it
}
# Django's own OPTIONS, not libpq connection keywords.
_NOT_LIBPQ = {
    "isolation_level",
    "server_side_binding",
    "assume_role",
    "pool",
    "cursor_factory",
    "context",
    "prepare_threshold",
}


def setting(name: str) -> Any:
    configured = getattr(settings, "QUEUETOPIA", {})
    unknown = set(configured) - set(DEFAULTS)
    if unknown:
        raise ImproperlyConfigured(f"unknown QUEUETOPIA settings: {', '.join(sorted(unknown))}")
    return configured.get(name, DEFAULTS[name])


def app_spec() -> str | None:
    spec: str | None = setting("APP")
    return spec


def required_app_spec() -> str:
    spec = app_spec()
    if not spec:
        raise ImproperlyConfigured(
            'set QUEUETOPIA = {"APP": "module:attribute"} to the topia in your settings'
        )
    return spec


@cache
def get_topia() -> Queuetopia:
    """The topia named by QUEUETOPIA["APP"]."""
    spec = required_app_spec()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ImproperlyConfigured(f"QUEUETOPIA APP must look like 'module:attribute': {spec!r}")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ImproperlyConfigured(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not isinstance(target, Queuetopia):
        raise ImproperlyConfigured(f"QUEUETOPIA APP {spec} is a {type(target).__name__}")
    return target


def django_dsn(settings_dict: dict[str, Any]) -> str:
    """A libpq DSN for one entry of DATABASES (NAME, USER, PASSWORD, HOST, PORT and
    the libpq keywords among its OPTIONS, such as sslmode)."""
    keywords = {
        "dbname": settings_dict.get("NAME"),
        "user": settings_dict.get("USER"),
        "password": settings_dict.get("PASSWORD"),
        "host": settings_dict.get("HOST"),
        "port": settings_dict.get("PORT"),
    }
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if key not in _NOT_LIBPQ and isinstance(value, str | int) and not isinstance(value, bool):
            keywords[key] = value
    present = {k: str(v) for k, v in keywords.items() if v not in (None, "")}
    try:
        if "conninfo" in present:  # not a libpq keyword, but conninfo()'s own argument
            raise ValueError('invalid connection option "conninfo"')
        return conninfo(**present)
    except Exception as exc:  # a keyword libpq does not know: the message names it
        raise ImproperlyConfigured(f"cannot build a DSN from DATABASES: {exc}") from None


def configure(topia: Queuetopia) -> None:
    """Point `topia` at Django: its DSN (unless it was given one) from the settings,
    and enqueues inside `transaction.atomic()` on Django's connection."""
    alias: str = setting("DATABASE")
    if alias not in connections:
        raise ImproperlyConfigured(f"QUEUETOPIA DATABASE {alias!r} is not in DATABASES")
    # An explicit DSN (given to the constructor) wins over Django's.
    if not topia.dsn_given:
        topia.dsn = setting("DSN") or django_dsn(connections[alias].settings_dict)
        if not setting("DSN"):
            _follow_test_database(topia, alias)
    if setting("JOIN_ATOMIC") and topia.enqueue_connection is None:
        topia.enqueue_connection = atomic_connection(alias)


def _follow_test_database(topia: Queuetopia, alias: str) -> None:
    """Django's test runner renames the database after start-up (test_NAME): follow it
    while the topia has not connected yet, so tests never touch the real database."""

    def follow(sender: object, connection: Any, **kwargs: Any) -> None:
        if connection.alias != alias:
            return
        dsn = django_dsn(connection.settings_dict)
        if dsn != topia.dsn:
            with contextlib.suppress(QueuetopiaError):  # connected: it keeps its database
                topia.dsn = dsn

    connection_created.connect(follow, weak=False, dispatch_uid=f"queuetopia-{id(topia)}")
