"""Enqueues inside `transaction.atomic()` join Django's transaction (docs/django.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import connections

from queuetopia import ConfigurationError
from queuetopia.db.connections import is_sync_connection

if TYPE_CHECKING:
    from queuetopia.db.rows import Conn


def atomic_connection(alias: str = "default") -> Callable[[], Conn | None]:
    """For `Queuetopia(enqueue_connection=...)`: Django's psycopg connection while the
    current thread is inside `transaction.atomic()` on `alias`, so the job commits or
    rolls back with it; outside, None: the job commits at once on the topia's pool."""

    def current() -> Conn | None:
        wrapper = connections[alias]
        if not wrapper.in_atomic_block:
            return None
        raw = wrapper.connection  # opened by atomic(), in the transaction
        if not is_sync_connection(raw):
            raise ConfigurationError(
                "joining Django's transaction needs its psycopg 3 backend; "
                f"database {alias!r} uses {type(raw).__module__}"
            )
        return raw

    return current
