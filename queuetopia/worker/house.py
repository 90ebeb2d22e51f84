"""The worker's housekeeping: its statements that are on no job's path (the search
for due queues, releases, pruning, periodic jobs, what failure hooks read and note),
run one at a time on a thread and a connection of their own, retried while the
database is away (bookkeeper.py). The worker's loop awaits them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..db.connections import Database
from ..db.rows import Conn
from .bookkeeper import Bookkeeper

T = TypeVar("T")


class House:
    def __init__(self, database: Database, stopped: Callable[[], bool]) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="queuetopia-house")
        self._book = Bookkeeper(database, stopped)

    async def __call__(self, fn: Callable[[Conn], T]) -> T:
        """Run the store call `fn` on the housekeeping connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._book, fn)

    def close(self) -> None:
        self._thread.submit(self._book.close)
        self._thread.shutdown(wait=True)
