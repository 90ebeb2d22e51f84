"""The topia the benchmark's workers run, with a no-op action that records each run.

`queuetopia worker bench.apps:topia` works too: the database comes from
$QUEUETOPIA_DSN, the scope from $QUEUETOPIA_BENCH_SCOPE, and what ran is written at
exit to $QUEUETOPIA_BENCH_LOG (if set); $QUEUETOPIA_BENCH_POLL sets the poll interval.

`sleep_async` and `sleep_plain` wait `d` seconds (`await asyncio.sleep`, `time.sleep`)
and record their run the same way: the I/O-bound workloads.

The record is the benchmark's independent check that every job ran exactly once and
that runs of one queue never overlapped: job id plus wall-clock start and end of the
action, kept in compact arrays (24 bytes a job) under a lock. With
$QUEUETOPIA_BENCH_RECORD=count only a counter is kept (the memory workload)."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from array import array

from queuetopia import Job, Queuetopia

SCOPE_ENV = "QUEUETOPIA_BENCH_SCOPE"
LOG_ENV = "QUEUETOPIA_BENCH_LOG"
RECORD_ENV = "QUEUETOPIA_BENCH_RECORD"
POLL_ENV = "QUEUETOPIA_BENCH_POLL"


class RunLog:
    """What this process ran: job ids with the action's start and end times."""

    def __init__(self, record: bool = True) -> None:
        self.record = record
        self.count = 0
        self.ids: array[int] = array("q")
        self.t0: array[float] = array("d")
        self.t1: array[float] = array("d")
        self._lock = threading.Lock()
        self._dumped = False

    def add(self, job_id: int, started: float, ended: float) -> None:
        with self._lock:
            self.count += 1
            if self.record:
                self.ids.append(job_id)
                self.t0.append(started)
                self.t1.append(ended)

    def dump(self, path: str) -> None:
        with self._lock:
            if self._dumped:
                return
            self._dumped = True
            data = {
                "pid": os.getpid(),
                "count": self.count,
                "ids": self.ids.tolist(),
                "t0": self.t0.tolist(),
                "t1": self.t1.tolist(),
            }
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)


RUNS = RunLog(record=os.environ.get(RECORD_ENV, "log") != "count")


def make_topia(dsn: str | None = None, scope: str | None = None) -> Queuetopia:
    """A topia with the benchmark's actions; `noop` does nothing but record its run."""
    topia = Queuetopia(
        dsn=dsn,
        scope=scope or os.environ.get(SCOPE_ENV, "bench"),
        poll_interval=float(os.environ.get(POLL_ENV, "60")),
        pool_size=4,
    )

    @topia.action("noop")
    def noop(job: Job, i: int = 0) -> None:
        started = time.time()
        RUNS.add(job.id, started, time.time())

    # I/O-bound work: a job that waits `d` seconds, as on the network.
    @topia.action("sleep_async")
    async def sleep_async(job: Job, d: float, i: int = 0) -> None:
        started = time.time()
        await asyncio.sleep(d)
        RUNS.add(job.id, started, time.time())

    @topia.action("sleep_plain")
    def sleep_plain(job: Job, d: float, i: int = 0) -> None:
        started = time.time()
        time.sleep(d)
        RUNS.add(job.id, started, time.time())

    return topia


topia = make_topia(os.environ.get("QUEUETOPIA_DSN") or None)


def _dump_at_exit() -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        RUNS.dump(path)


atexit.register(_dump_at_exit)
