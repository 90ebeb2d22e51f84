"""What every workload gets: the sizes of the mode (smoke, quick, full), the database,
the worker settings, and the server at `max_connections=100` the I/O workloads need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .db import BenchDatabase, max_connections, open_database
from .procs import Workers


@dataclass(frozen=True)
class IoShape:
    """An I/O-bound drain: `jobs` on `queues`, each sleeping `delay` seconds, drained by
    `processes` workers at `concurrency`, given at most `time_limit` seconds."""

    jobs: int
    queues: int
    delay: float
    processes: int
    concurrency: int
    time_limit: float

    @property
    def ceiling(self) -> float:
        """jobs/s if every slot were always busy sleeping: the most concurrency allows."""
        return min(self.processes * self.concurrency, self.queues) / self.delay


@dataclass(frozen=True)
class SnapshotShape:
    """The steady load of the held-snapshot workload: `rate` jobs/s spread over
    `queues` queues plus `hot_rate` jobs/s on one queue, for `seconds`, reported per
    `window` seconds, then `drain_limit` seconds to finish the backlog."""

    seconds: float
    window: float
    rate: int = 1_000
    queues: int = 1_000
    hot_rate: int = 200
    drain_limit: float = 120.0


@dataclass(frozen=True)
class Sizes:
    enqueue_single: int
    enqueue_batches: int  # batches of 1,000
    many_queues: tuple[int, int]
    ordered: tuple[int, int]
    one_queue: int
    latency_samples: int
    scale_big: tuple[int, int]  # queues x jobs per queue
    scale_window: int  # jobs to run in the big set
    scale_small: tuple[int, int]
    memory: tuple[int, int]
    floor_seconds: float
    floor_clients: tuple[int, ...]
    floor_pairs: int  # claim+finish pairs in all, split over the clients
    logging: tuple[int, int]  # the ordered shape, smaller: rich logging is slow
    growth_processes: tuple[int, ...] = (1, 2)  # the ordered drain with this many workers
    growth_queues: tuple[int, ...] = (100, 1_000)  # the claim rate with this many queues
    io_50ms: IoShape = IoShape(5_000, 1_000, 0.05, 2, 100, 120.0)
    io_500ms: IoShape = IoShape(20_000, 10_000, 0.5, 2, 1_000, 120.0)
    connections: tuple[int, ...] = (10, 100, 1_000)  # worker concurrency
    connections_idle: float = 3.0  # seconds of idle sampling, before and after the drain
    connections_limit: float = 60.0  # seconds for the drain, which ideally takes 0.2 s
    snapshot: SnapshotShape = SnapshotShape(600.0, 5.0)
    producers: tuple[int, int] = (10_000, 16)  # jobs in all, producer processes


SIZES = {
    "smoke": Sizes(200, 2, (50, 4), (10, 10), 200, 10, (1_000, 5), 500, (20, 5), (50, 20), 1.0,
                   (2,), 400, (10, 5),
                   io_50ms=IoShape(200, 50, 0.05, 2, 20, 30.0),
                   io_500ms=IoShape(200, 100, 0.5, 2, 20, 30.0),
                   connections=(10, 40), connections_idle=0.5, connections_limit=30.0,
                   snapshot=SnapshotShape(2.0, 1.0, rate=500, queues=100, hot_rate=100,
                                          drain_limit=30.0),
                   producers=(400, 4)),
    "quick": Sizes(2_000, 20, (1_000, 10), (100, 100), 5_000, 100, (10_000, 10), 5_000,
                   (100, 10), (200, 100), 5.0, (2,), 10_000, (100, 20), (1, 2, 4, 8),
                   (100, 10_000, 100_000),
                   io_50ms=IoShape(5_000, 1_000, 0.05, 2, 100, 60.0),
                   io_500ms=IoShape(20_000, 10_000, 0.5, 2, 1_000, 60.0),
                   connections_idle=2.0, snapshot=SnapshotShape(120.0, 5.0, drain_limit=60.0),
                   producers=(4_000, 16)),
    "full": Sizes(10_000, 100, (1_000, 10), (100, 100), 5_000, 300, (10_000, 100), 20_000,
                  (100, 10), (1_000, 100), 10.0, (1, 2, 20), 20_000, (100, 20), (1, 2, 4, 8),
                  (100, 10_000, 1_000_000)),
}  # fmt: skip

# The I/O workloads' server: PostgreSQL's default, which the engine must live within.
IO_MAX_CONNECTIONS = 100


@dataclass
class Context:
    db: BenchDatabase
    sizes: Sizes
    concurrency: int
    log_mode: str
    timing: bool = True  # smoke: correctness only
    log: Callable[[str], None] = print
    profile_dir: Path | None = None
    _servers: dict[int, BenchDatabase] = field(default_factory=dict)

    def workers(
        self,
        scope: str,
        processes: int,
        *,
        record: str = "log",
        log_mode: str | None = None,
        poll_interval: float = 60.0,
        concurrency: int | None = None,
        db: BenchDatabase | None = None,
    ) -> Workers:
        return Workers(
            (db or self.db).dsn,
            scope,
            processes,
            concurrency or self.concurrency,
            log_mode or self.log_mode,
            record,
            poll_interval,
            self.profile_dir,
        )

    def server_at(self, limit: int) -> BenchDatabase:
        """A database on a server whose `max_connections` is `limit`: the run's own
        when it is (pgserver's default is 100), else an embedded server of its own,
        started once and closed with the run. With $QUEUETOPIA_BENCH_DSN pointing at
        a server with another limit, raises: such a server cannot be made here."""
        if max_connections(self.db) == limit:
            return self.db
        if limit not in self._servers:
            if not self.db.embedded:
                raise RuntimeError(
                    f"the server of $QUEUETOPIA_BENCH_DSN has max_connections="
                    f"{max_connections(self.db)}; this workload needs {limit}"
                )
            self.log(f"starting an embedded PostgreSQL with max_connections={limit}")
            self._servers[limit] = open_database(max_connections=limit)
        return self._servers[limit]

    def close(self) -> None:
        for db in self._servers.values():
            db.close()
        self._servers.clear()
