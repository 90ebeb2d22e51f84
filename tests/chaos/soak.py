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
  out);
* `failover`: on a primary with a synchronous standby (tests/chaos/failover.py), the
  primary crashes, the standby is promoted after longer than the lease, every worker's
  proxy is pointed at it, and the old primary is rebuilt as its standby;
* `no-slots`: another application takes every connection slot of the server, and
  every slot freed meanwhile, for 1 to 3 s (tests/chaos/slots.py);
* `snapshot`: a `REPEATABLE READ` transaction holds its snapshot for `snapshot_s`
  (60 s in the long soaks), so that nothing the workers delete meanwhile is vacuumed
  away. It is not a fault the invariants may use to explain anything (nothing may go
  wrong because of it): it is counted in the figures, not written to `chaos_fault`.

The first worker runs at a high concurrency (`big`), the others at 3; a third of the
queues run `awork`, an `async def` action, the others `work`.

A worker that fails stop (exit status 75: a job still running once its lease was lost,
which a SIGSTOP or a partition past the lease can cause; queuetopia/failstop.py) is
recorded as an `exit` fault at the moment it was seen dead (a watcher polls every 20
ms) and started again, as its supervisor would. Any other exit is a finding.

While a worker is stopped or partitioned, a transaction it had open stands still on the
server; the idle-in-transaction watch excuses sessions of that worker's proxy until 3
s after the fault ends.

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
from .failover import Cluster
from .harness import Chaos, now
from .proxy import Proxy
from .slots import SlotHog

ACTIONS = ("awork", "work", "work")  # by queue: a third of them async def
PROCESS_FAULTS = ("kill", "stop", "partition", "reset", "terminate")
DATABASE_FAULTS = ("restart-fast", "readonly", "failover", "no-slots")
# Database-wide faults are rarer: each one hits every worker; a failover the rarest (it
# takes seconds, and rebuilds a standby). One snapshot is held at a time.
WEIGHTS = {
    "restart-fast": 0.3,
    "readonly": 0.3,
    "failover": 0.12,
    "no-slots": 0.3,
    "snapshot": 0.1,
}


@dataclass
class Slot:
    """One worker and the proxy in front of it; `busy` while a fault holds it."""

    proc: WorkerProcess
    proxy: Proxy
    concurrency: int
    busy: threading.Lock = field(default_factory=threading.Lock)
    frozen_until: float = 0.0  # monotonic: a stop or partition holds its transactions


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
        big: int = 3,
        snapshot_s: float = 10.0,
    ) -> None:
        self.chaos = chaos
        self.rng = random.Random(seed)
        self.seconds = seconds
        self.mean_gap = mean_gap
        self.big, self.snapshot_s = big, snapshot_s
        database = ["restart-fast", "no-slots"] + ["readonly"] * read_only
        if isinstance(chaos.server, Cluster):
            database.append("failover")
        self.kinds = (*PROCESS_FAULTS, *database, "snapshot")
        self.queues = [f"s{i}" for i in range(queues)]
        self.slots: list[Slot] = []
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._db_fault = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._killed: set[int] = set()  # pids a `kill` fault took
        self.fail_stops = 0
        self.snapshots: list[float] = []  # seconds each snapshot was held
        self._snapshot = threading.Lock()
        for i in range(workers):
            self.slots.append(self._start_worker(big if i == 0 else 3))
        self.enqueued = 0
        chaos.watch.excuse = self._frozen

    # -- workers -------------------------------------------------------------------

    def _start_worker(self, concurrency: int) -> Slot:
        proxy = self.chaos.proxy()
        proc = self.chaos.worker(
            concurrency=concurrency, dsn=self.chaos.proxied_dsn(proxy), ready=False
        )
        proc.wait_ready(timeout=120)
        return Slot(proc, proxy, concurrency)

    def _record(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    # -- the run -------------------------------------------------------------------

    def run(self) -> None:
        producer = threading.Thread(target=self._produce, daemon=True, name="soak-producer")
        producer.start()
        watching = threading.Event()
        watcher = threading.Thread(
            target=self._watch_exits, args=(watching,), daemon=True, name="soak-exits"
        )
        watcher.start()
        deadline = time.monotonic() + self.seconds
        # At least one failover a run, at a random moment of its middle third.
        forced_at = deadline - self.seconds * self.rng.uniform(0.33, 0.67)
        forced = "failover" not in self.kinds
        while time.monotonic() < deadline:
            time.sleep(self.rng.expovariate(1 / self.mean_gap))
            kind = self.rng.choices(self.kinds, [self._weight(k) for k in self.kinds])[0]
            wait = not forced and time.monotonic() >= forced_at
            if wait:
                kind, forced = "failover", True
            thread = threading.Thread(target=self._inject, args=(kind, wait), daemon=True)
            thread.start()
            self._threads.append(thread)
            self._threads = [t for t in self._threads if t.is_alive()]
        for thread in self._threads:
            # A failover rebuilding its standby on a loaded machine takes minutes (its
            # pg_basebackup alone may take 120 s): the heal must not run beside it.
            thread.join(timeout=300)
        self._stop.set()
        producer.join(timeout=120)
        time.sleep(2 * self.chaos.lock_ttl)  # a fail-stop the last fault causes comes by then
        watching.set()
        watcher.join(timeout=180)
        self.heal()

    def _watch_exits(self, done: threading.Event) -> None:
        """Record each worker that exited on its own, and start another in its slot."""
        dead_at: dict[int, datetime] = {}
        while not done.wait(0.02):
            for slot in self.slots:
                proc = slot.proc
                if proc.popen.poll() is None or proc.pid in self._killed:
                    continue
                dead_at.setdefault(proc.pid, now())
                if not slot.busy.acquire(blocking=False):
                    continue  # a fault thread still holds it: replace it next round
                try:
                    if slot.proc is proc:
                        self._exited(slot, dead_at[proc.pid])
                except Exception as exc:
                    with self._lock:
                        self.errors.append(f"exit watch: {type(exc).__name__}: {exc}")
                finally:
                    slot.busy.release()

    def _exited(self, slot: Slot, at: datetime) -> None:
        proc = slot.proc
        status = proc.popen.returncode
        if status == 75 and "did not stop after the lease on its queue was lost" in proc.log():
            self.fail_stops += 1
        else:
            with self._lock:
                self.errors.append(f"worker {proc.pid} exited with {status}: {proc.log()[-600:]}")
        self._record(Fault("exit", proc.pid, at, detail=f"status {status}"))
        slot.proxy.close()
        self._replace(slot)

    def _frozen(self, port: int | None) -> bool:
        """Is `port` a connection of a worker a stop or a partition holds (or held
        until less than 3 s ago)?"""
        moment = time.monotonic()
        return any(
            slot.frozen_until > moment and port in slot.proxy.upstream_ports()
            for slot in self.slots
        )

    @staticmethod
    def _weight(kind: str) -> float:
        return WEIGHTS.get(kind, 1.0)

    def _inject(self, kind: str, wait: bool = False) -> None:
        try:
            if kind == "snapshot":
                if self._snapshot.acquire(blocking=False):
                    try:
                        self._hold_snapshot()
                    finally:
                        self._snapshot.release()
                return
            if kind in DATABASE_FAULTS:
                if self._db_fault.acquire(blocking=wait):
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
            self._killed.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            slot.proc.popen.kill()
            slot.proc.wait(30)
            self._record(Fault("kill", pid, now()))
            self._replace(slot)
        elif kind == "stop":
            began, slot.frozen_until = now(), float("inf")
            os.kill(pid, signal.SIGSTOP)
            time.sleep(ttl * self.rng.uniform(1.1, 1.6))
            os.kill(pid, signal.SIGCONT)
            self._record(Fault("stop", pid, began, now()))
            slot.frozen_until = time.monotonic() + 3.0
        elif kind == "partition":
            began, slot.frozen_until = now(), float("inf")
            slot.proxy.set_mode("blackhole")
            time.sleep(ttl * self.rng.uniform(1.1, 1.6))
            slot.proxy.set_mode("pass")
            self._record(Fault("partition", pid, began, now()))
            slot.frozen_until = time.monotonic() + 3.0
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
            self.chaos.drop_proxy(slot.proxy)  # its worker is gone: no descriptor kept
            slot.proxy = self.chaos.proxy()
            slot.proc = self.chaos.worker(
                concurrency=slot.concurrency, dsn=self.chaos.proxied_dsn(slot.proxy), ready=False
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
        elif kind == "no-slots":
            self._no_slots()
        elif kind == "failover":
            cluster = self.chaos.server
            assert isinstance(cluster, Cluster)
            detail = "did not complete"
            try:
                promote_s = cluster.pair.fail_over(self.chaos.lock_ttl * 1.2, self._repoint)
                detail = f"promoted after {promote_s:.2f}s"
            finally:
                self._record(Fault(kind, None, began, now(), detail=detail))

    def _no_slots(self) -> None:
        began = now()
        with SlotHog(self.chaos.server.primary_dsn) as hog:
            time.sleep(self.rng.uniform(1.0, 3.0))
            taken = hog.taken
        self._record(Fault("no-slots", None, began, now(), detail=f"{taken} slots"))

    def _hold_snapshot(self) -> None:
        """A report's transaction: one snapshot, held. A restart or a failover may
        end it early; that is not an error of the run."""
        began = time.monotonic()
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(
                self.chaos.server.primary_dsn, application_name="chaos-snapshot", connect_timeout=5
            ) as conn,
        ):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT count(*) FROM queuetopia_jobs")
            deadline = began + self.snapshot_s
            while time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(0.5)
                conn.execute("SELECT 1")  # the session is still there, its snapshot too
        with self._lock:
            self.snapshots.append(round(time.monotonic() - began, 1))

    def _repoint(self) -> None:
        """Every proxy forwards to the new primary; connections to the old one are gone."""
        for proxy in list(self.chaos.proxies):
            proxy.upstream = ("127.0.0.1", self.chaos.server.port)
            proxy.reset_all()

    def _read_only(self, on: bool) -> None:
        dsn = self.chaos.server.primary_dsn
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET default_transaction_read_only = off")  # this session writes
            if on:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            else:
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")

    def heal(self) -> None:
        """End every fault: the database writable and up, every worker resumed and
        connected, and the fault log written."""
        with self._db_fault:  # no database fault still under way (a failover's rebuild)
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
                        queue,
                        ACTIONS[(n % len(self.queues)) % len(ACTIONS)],
                        {"n": position, "sleep": sleep},
                        max_attempts=50,
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

    def faults_of(self, kind: str) -> int:
        return sum(1 for f in self.faults if f.kind == kind)

    def figures(self) -> dict[str, Any]:
        return {
            "faults_injected": len(self.faults),
            "faults_by_kind": dict(Counter(f.kind for f in self.faults)),
            "fail_stop_exits": self.fail_stops,
            "snapshots_held_s": sorted(self.snapshots),
            "big_worker_concurrency": self.big,
            "idle_in_transaction_excused": self.chaos.watch.excused,
            "fault_errors": self.errors[:10],
            "enqueued": self.enqueued,
            "workers": len(self.slots),
            "queues": len(self.queues),
        }
