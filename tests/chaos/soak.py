"""A randomized mixed-fault soak: faults of every kind, interleaved, injected into
several workers on many queues while a producer keeps enqueuing.

Each worker runs behind a proxy of its own. A fault thread picks, at random intervals
from a seeded generator, one of:

* `kill`: SIGKILL a worker (then start a new one);
* `stop`: SIGSTOP a worker for longer than the lease, then SIGCONT;
* `partition`: blackhole a worker's proxy for longer than the lease, then heal;
* `reset`: RST on every connection of a worker;
* `terminate`: `pg_terminate_backend` of a random worker connection;
* `restart-fast`: restart PostgreSQL (`pg_ctl restart -m fast`);
* `readonly`: `ALTER SYSTEM SET default_transaction_read_only = on` and
  `pg_reload_conf()` for a second, then off again (a flag: `read_only=False` leaves it
  out).

A worker takes at most one fault at a time; the database at most one database-wide
fault at a time. Faults are logged in memory (the fault log cannot be written while the
database is read-only) and written to `chaos_fault` once the run is over, so that the
harness's invariants can tell which executions each fault explains.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from ..procs import WorkerProcess
from .harness import Chaos, now
from .proxy import Proxy

PROCESS_FAULTS = ("kill", "stop", "partition", "reset", "terminate")
DATABASE_FAULTS = ("restart-fast", "readonly")


@dataclass
class Slot:
    """One worker and the proxy in front of it; `busy` while a fault holds it."""

    proc: WorkerProcess
    proxy: Proxy
    busy: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Fault:
    kind: str
    pid: int | None
    at: datetime
    until: datetime | None = None
    detail: str = ""


class Soak:
    """Runs the workers, the producer and the faults for `seconds`."""

    def __init__(
        self,
        chaos: Chaos,
        *,
        seed: int,
        workers: int,
        queues: int,
        seconds: float,
        mean_gap: float,
        read_only: bool = True,
    ) -> None:
        self.chaos = chaos
        self.rng = random.Random(seed)
        self.seconds = seconds
        self.mean_gap = mean_gap
        self.kinds = PROCESS_FAULTS + (DATABASE_FAULTS if read_only else ("restart-fast",))
        self.queues = [f"s{i}" for i in range(queues)]
        self.slots: list[Slot] = []
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._db_fault = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for _ in range(workers):
            self.slots.append(self._start_worker())
        self.enqueued = 0

    # -- workers -------------------------------------------------------------------

    def _start_worker(self) -> Slot:
        proxy = self.chaos.proxy()
        proc = self.chaos.worker(concurrency=3, dsn=self.chaos.proxied_dsn(proxy), ready=False)
        proc.wait_ready(timeout=120)
        return Slot(proc, proxy)

    def _record(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    # -- the run -------------------------------------------------------------------

    def run(self) -> None:
        producer = threading.Thread(target=self._produce, daemon=True, name="soak-producer")
        producer.start()
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(self.rng.expovariate(1 / self.mean_gap))
            kind = self.rng.choices(self.kinds, [self._weight(k) for k in self.kinds])[0]
            thread = threading.Thread(target=self._inject, args=(kind,), daemon=True)
            thread.start()
            self._threads.append(thread)
            self._threads = [t for t in self._threads if t.is_alive()]
        for thread in self._threads:
            thread.join(timeout=120)
        self._stop.set()
        producer.join(timeout=120)
        self.heal()

    @staticmethod
    def _weight(kind: str) -> float:
        """Database-wide faults are rarer: each one hits every worker."""
        return 0.3 if kind in DATABASE_FAULTS else 1.0

    def _inject(self, kind: str) -> None:
        try:
            if kind in DATABASE_FAULTS:
                if self._db_fault.acquire(blocking=False):
                    try:
                        self._database_fault(kind)
                    finally:
                        self._db_fault.release()
                return
            slot = self.rng.choice(self.slots)
            if not slot.busy.acquire(blocking=False):
                return  # that worker is taking a fault already
            try:
                self._process_fault(kind, slot)
            finally:
                slot.busy.release()
        except Exception as exc:  # a fault that failed is a finding of the run
            with self._lock:
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")

    def _process_fault(self, kind: str, slot: Slot) -> None:
        chaos, ttl = self.chaos, self.chaos.lock_ttl
        pid = slot.proc.pid
        if slot.proc.popen.poll() is not None:
            return
        if kind == "kill":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            slot.proc.popen.kill()
            slot.proc.wait(30)
            self._record(Fault("kill", pid, now()))
            self._replace(slot)
        elif kind == "stop":
            began = now()
            os.kill(pid, signal.SIGSTOP)
            time.sleep(ttl * self.rng.uniform(1.1, 1.6))
            os.kill(pid, signal.SIGCONT)
            self._record(Fault("stop", pid, began, now()))
        elif kind == "partition":
            began = now()
            slot.proxy.set_mode("blackhole")
            time.sleep(ttl * self.rng.uniform(1.1, 1.6))
            slot.proxy.set_mode("pass")
            self._record(Fault("partition", pid, began, now()))
        elif kind == "reset":
            began = now()
            slot.proxy.set_mode("reset")
            time.sleep(0.05)
            slot.proxy.set_mode("pass")
            self._record(Fault("reset", pid, began, now()))
        elif kind == "terminate":
            rows = chaos.db.rows(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'queuetopia'"
                " AND backend_type = 'client backend'",
                timeout=5,
            )
            if rows:
                victim = self.rng.choice(rows)["pid"]
                chaos.db.rows("SELECT pg_terminate_backend(%s)", (victim,), timeout=5)
                self._record(Fault("terminate", None, now(), detail=str(victim)))

    def _replace(self, slot: Slot, tries: int = 5) -> None:
        """Start a new worker in the slot. One that exits at start (the database
        restarting meanwhile) is a finding of the run: recorded, and started again."""
        for _ in range(tries):
            slot.proxy = self.chaos.proxy()
            slot.proc = self.chaos.worker(
                concurrency=3, dsn=self.chaos.proxied_dsn(slot.proxy), ready=False
            )
            try:
                slot.proc.wait_ready(timeout=120)
                return
            except AssertionError as exc:
                last = str(exc).strip().splitlines()[-1][:300]
                with self._lock:
                    self.errors.append(f"a new worker exited at start: {last}")

    def _database_fault(self, kind: str) -> None:
        began = now()
        if kind == "restart-fast":
            away = self.chaos.server.restart("fast")
            self._record(Fault(kind, None, began, now(), detail=f"{away:.2f}s"))
        elif kind == "readonly":
            self._read_only(True)
            time.sleep(self.rng.uniform(0.5, 1.5))
            self._read_only(False)
            self._record(Fault(kind, None, began, now()))

    def _read_only(self, on: bool) -> None:
        with psycopg.connect(self.chaos.server.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET default_transaction_read_only = off")  # this session writes
            if on:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            else:
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")

    def heal(self) -> None:
        """End every fault: the database writable and up, every worker resumed and
        connected, and the fault log written."""
        self.chaos.server.ensure_running()
        self._read_only(False)
        for slot in self.slots:
            slot.proxy.set_mode("pass")
            if slot.proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.proc.pid, signal.SIGCONT)
        for fault in self.faults:
            self.chaos.fault(fault.kind, fault.pid, fault.at, fault.until, fault.detail)

    # -- the producer ----------------------------------------------------------------

    def _produce(self) -> None:
        """Keep every queue a few jobs deep; an enqueue that failed is retried unless
        it turns out to have committed (a lost reply)."""
        n = 0
        rng = random.Random(self.rng.random())
        while not self._stop.is_set():
            queue = self.queues[n % len(self.queues)]
            position = n // len(self.queues)
            sleep = rng.uniform(0.02, 0.2)
            while not self._stop.is_set():
                try:
                    self.chaos.producer.create_job(
                        queue, "work", {"n": position, "sleep": sleep}, max_attempts=50
                    )
                    break
                except Exception:
                    time.sleep(0.2)
                    if self._exists(queue, position):
                        break
            self.enqueued += 1
            n += 1
            if n % len(self.queues) == 0:
                self._wait_backlog()

    def _exists(self, queue: str, position: int) -> bool:
        with contextlib.suppress(Exception):
            return bool(
                self.chaos.db.value(
                    "SELECT count(*) FROM queuetopia_jobs WHERE scope = %s AND queue = %s"
                    " AND (params->>'n')::int = %s",
                    (self.chaos.scope, queue, position),
                    timeout=5,
                )
            )
        return False

    def _wait_backlog(self, most: int = 5) -> None:
        """Until no queue has more than `most` jobs left (or the run ends)."""
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                deepest = self.chaos.db.value(
                    "SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM queuetopia_jobs"
                    " WHERE scope = %s AND state <> 'done' GROUP BY queue) s",
                    (self.chaos.scope,),
                    timeout=5,
                )
                if deepest <= most:
                    return
            time.sleep(0.2)

    # -- figures -------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        return {
            "faults_injected": len(self.faults),
            "faults_by_kind": dict(Counter(f.kind for f in self.faults)),
            "fault_errors": self.errors[:10],
            "enqueued": self.enqueued,
            "workers": len(self.slots),
            "queues": len(self.queues),
        }
