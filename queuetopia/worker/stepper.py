"""Runs the steps of a worker's queues (JOB_STEP) on the worker's own connection, on
its event loop: every item submitted while a step is in flight goes into the next
one, so the outcomes and claims of many queues share one statement and one commit
(group commit, as River's completer batches). Each queue has at most one item in
flight, and its next job is claimed in the statement that records its last
outcome: the next job starts only once that outcome is durable.

While the database is away the step is retried with a jittered backoff, on a new
connection, at most lock_ttl/20 apart: the outcomes it records must reach the database
while the leases they were won under are still trusted (docs/guarantees.md,
"Outages"). A step whose reply was lost may have committed: its retry says so
(`retry`), and the statement recognises what the first try did (docs/design.md). What
it finds is acted on only once it is on the synchronous standby, if there is one
(sql/lease_barrier.sql)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from ..backoff import Spell, jittered
from ..db import steps
from ..db.connections import Database
from ..db.rows import AsyncConn
from ..errors import DatabaseConflict, DatabaseUnavailable
from ..models import Step, StepItem
from .holds import RETRY_SHARE

logger = logging.getLogger("queuetopia.worker")

# Items in one statement at most: each search takes an advisory lock for the
# statement's short transaction, and the lock table is shared by the whole server.
MAX_BATCH = 256
RETRY_FIRST, RETRY_MAX = 0.05, 5.0

# Called on the loop with each item and what its step did; None when the step failed
# for a reason that retrying cannot cure.
Done = Callable[[StepItem, Step | None], None]


class Stepper:
    def __init__(
        self,
        database: Database,
        *,
        scope: str,
        owner: str,
        node: str,
        ttl: float,
        stopped: Callable[[], bool],
    ) -> None:
        self._database = database
        self._scope, self._owner, self._node, self._ttl = scope, owner, node, ttl
        self._stopped = stopped
        self._pending: list[tuple[StepItem, Done]] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConn | None = None
        self._spell = Spell("step", "ran again")
        self._settled: Callable[[], None] = lambda: None

    def on_settled(self, settled: Callable[[], None]) -> None:
        """Call `settled` on the loop once every item of a step has been told."""
        self._settled = settled

    @property
    def idle(self) -> bool:
        return self._task is None

    def submit(self, item: StepItem, done: Done) -> None:
        """Run `item` in the next step; `done(item, step)` is called on the loop."""
        self._pending.append((item, done))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                found = await self._run_or_fail([item for item, _ in batch])
                for (item, done), step in zip(batch, found, strict=True):
                    try:
                        done(item, step)
                    except Exception:
                        logger.exception("worker failed on the step of queue %r", item.queue)
                try:
                    self._settled()
                except Exception:
                    logger.exception("worker failed after a step of %d queues", len(batch))
        finally:
            self._task = None

    async def _run_or_fail(self, items: list[StepItem]) -> list[Step | None]:
        """The steps, or None for each item when the statement failed for a reason
        that retrying cannot cure: the worker then gives those queues up, and a job
        whose outcome it could not record is recovered as "worker lost" once its
        lease runs out (docs/design.md). Results and error texts are made storable
        before they get here, so no known input causes this."""
        try:
            return list(await self._run(items))
        except (DatabaseUnavailable, DatabaseConflict):
            if not self._stopped():
                raise
        except Exception:
            logger.exception("a step of %d queues failed; giving them up", len(items))
        return [None] * len(items)

    async def _run(self, items: list[StepItem]) -> list[Step]:
        most = min(RETRY_MAX, self._ttl * RETRY_SHARE)
        delay = min(RETRY_FIRST, most)
        while True:
            try:
                conn = await self._connection()
                found = await steps.job_step_async(
                    conn,
                    scope=self._scope,
                    owner=self._owner,
                    node=self._node,
                    ttl=self._ttl,
                    items=items,
                    prepared=self._database.prepare_threshold is not None,
                )
                if items[0].retry:  # every item is retried, or none
                    queues = [item.queue for item in items]
                    await steps.lease_barrier_async(
                        conn, scope=self._scope, owner=self._owner, queues=queues
                    )
                self._spell.ended()
                return found
            except (DatabaseUnavailable, DatabaseConflict) as exc:
                await self._drop(exc)
                if self._stopped():
                    raise
                self._spell.failed(exc)
                await asyncio.sleep(jittered(delay))
                delay = min(delay * 2, most)
                if isinstance(exc, DatabaseUnavailable):
                    items = [_retried(item) for item in items]

    async def _connection(self) -> AsyncConn:
        if self._conn is None or self._conn.closed:
            self._conn = await self._database.connect_worker_async()
        return self._conn

    async def _drop(self, exc: BaseException) -> None:
        """Forget the connection after an error that may have broken it (a conflict,
        a deadlock or a serialization failure, leaves it usable)."""
        if isinstance(exc, DatabaseUnavailable) and self._conn is not None:
            conn, self._conn = self._conn, None
            await _close(conn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)


def _retried(item: StepItem) -> StepItem:
    """The item again, after a try that may have committed: a claim may have been
    made (look for our running job), an attempt may have been recorded."""
    return replace(item, retry=True, zombies=item.zombies or item.claim)


async def _close(conn: AsyncConn) -> None:
    try:
        await conn.close()
    except Exception:  # a broken connection may fail to close; it is gone either way
        logger.debug("closing a broken connection failed", exc_info=True)
