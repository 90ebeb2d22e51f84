"""What a worker needs of its topia, handed to it explicitly: the settings, the action
registry, the databases and the enqueue path (docs/design.md). The facade makes one
for each worker; nothing in the engine reaches back to the facade."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .db.connections import Database
from .enqueue import Producer
from .registry import Registry
from .settings import Settings


@dataclass(frozen=True)
class Engine:
    settings: Settings
    registry: Registry
    database: Database
    listen_database: Database  # where LISTEN goes: past a pooler, the server itself
    producer: Producer  # for periodic jobs, and the jobs an action enqueues
    # Run on a runner thread's event loop before it closes: closes what async actions
    # opened on that loop (the topia's async pool for that loop).
    close_loop: Callable[[], Awaitable[None]]
