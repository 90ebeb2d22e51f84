"""The chaos harness: worker processes against the chaos server, the faults injected
into them, and the invariants checked afterwards in SQL over the execution log.

The execution log (`chaos_exec`) is written by the actions (tests/chaos/chaos_app.py);
the fault log (`chaos_fault`) by the tests, one row per fault with the wall-clock
time of the host the database runs on (the same clock as the database's). A fault
explains what an execution may do that no execution may do otherwise:

* `kill` / `exit`: the process died no later than `at`, so its running execution ended
  by then; a later execution of the queue must start after it (no overlap), and the
  attempt must count as failed ("worker lost");
* `stop` / `partition`: between `at` and `until` the process ran on without a lease it
  could renew: its execution may overlap its successor's until it notices (that is
  what the fence is for), and it may have run a job to its end without recording it.
  An execution frozen by a `stop` as it began logs its start after SIGCONT, and may
  come after its successor's in the queue's order (ORDER_LOG).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row

from queuetopia import Queuetopia

from ..helpers import wait_for
from ..procs import WorkerProcess, Workers
from .proxy import Proxy
from .server import ChaosServer

APP = "tests.chaos.chaos_app:topia"

LOG_TABLES = """
CREATE TABLE IF NOT EXISTS chaos_exec (
    exec_id    uuid        PRIMARY KEY,
    scope      text        NOT NULL,
    job_id     bigint      NOT NULL,
    queue      text        NOT NULL,
    n          integer     NOT NULL,
    attempt    integer     NOT NULL,
    pid        integer     NOT NULL,
    node       text,
    prev_error text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at   timestamptz,
    outcome    text
);
CREATE INDEX IF NOT EXISTS chaos_exec_scope ON chaos_exec (scope, queue, started_at);
CREATE TABLE IF NOT EXISTS chaos_hook (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope   text        NOT NULL,
    job_id  bigint      NOT NULL,
    attempt integer     NOT NULL,
    pid     integer     NOT NULL,
    error   text,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS chaos_fault (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope  text        NOT NULL,
    kind   text        NOT NULL,
    pid    integer,
    at     timestamptz NOT NULL,
    until  timestamptz,
    detail text
);
"""

# Each execution with the moment it surely ended: its logged end, else the moment its
# process was seen dead; and whether a fault left it running without a lease.
EXECUTIONS = """
SELECT x.*,
       coalesce(x.ended_at,
                (SELECT min(f.at) FROM chaos_fault f
                  WHERE f.scope = x.scope AND f.pid = x.pid AND f.kind IN ('kill', 'exit')
                    AND f.at >= x.started_at)) AS surely_ended,
       EXISTS (SELECT 1 FROM chaos_fault f
                WHERE f.scope = x.scope AND f.pid = x.pid AND f.kind IN ('stop', 'partition')
                  AND f.at <= coalesce(x.ended_at, 'infinity')
                  AND coalesce(f.until, 'infinity') >= x.started_at) AS unleased,
       (SELECT max(f.until) FROM chaos_fault f
         WHERE f.scope = x.scope AND f.pid = x.pid AND f.kind IN ('stop', 'partition')
           AND f.at <= coalesce(x.ended_at, 'infinity')
           AND coalesce(f.until, 'infinity') >= x.started_at) AS unleased_until
  FROM chaos_exec x
 WHERE x.scope = %(scope)s
"""

# Two executions of one queue at once: b started before a surely ended.
OVERLAPS = (
    "WITH e AS ("
    + EXECUTIONS
    + """)
SELECT a.queue, a.job_id AS first_job, b.job_id AS second_job, a.pid AS first_pid,
       b.pid AS second_pid, a.unleased AS explained,
       a.surely_ended IS NULL AS never_ended,
       -- NULL where neither ended: infinity minus a time is an error (seed 3190057975).
       extract(epoch FROM least(a.surely_ended, b.surely_ended) - b.started_at) AS seconds,
       extract(epoch FROM greatest(a.surely_ended - a.unleased_until, interval '0'))
           AS after_resume
  FROM e a JOIN e b
    ON a.queue = b.queue AND a.exec_id <> b.exec_id
   AND (a.started_at, a.exec_id) < (b.started_at, b.exec_id)
   AND coalesce(a.surely_ended, 'infinity') > b.started_at
"""
)

# An execution of an earlier job starting after a later job's: the queue ran out of order.
# One is explained (and counted apart, as "order cut off") when that execution's
# process was frozen by a SIGSTOP as the execution began, its start logged within a
# second of SIGCONT: the action's body ran on after the process resumed, while its
# successor had taken the queue over (no lease can stop a frozen process; the worker
# interrupts it and discards its outcome). Its start is logged when the process
# resumes, so it may even come after its successor's executions have ended.
ORDER_LOG = """
SELECT s.*, EXISTS (
           SELECT 1 FROM chaos_fault f
            WHERE f.scope = %(scope)s AND f.pid = s.pid AND f.kind = 'stop'
              AND s.started_at BETWEEN f.at AND f.until + interval '1 second') AS explained
  FROM (SELECT job_id, n, pid, queue, started_at,
               lag(n) OVER (PARTITION BY queue ORDER BY started_at, exec_id) AS before
          FROM chaos_exec WHERE scope = %(scope)s) s
 WHERE n < before
"""

# Completions recorded out of queue order.
ORDER_VIOLATIONS_JOBS = """
SELECT count(*) FROM (
    SELECT seq, lag(seq) OVER (PARTITION BY queue ORDER BY done_at, id) AS before
      FROM queuetopia_jobs WHERE scope = %(scope)s AND state = 'done') s
 WHERE seq < before
"""

# A job that ran to its end successfully in an attempt that is not the one recorded:
# it completed twice. Explained only if a fault hit that process (or the whole
# database: an outage, a restart, a read-only spell, during which no lease can be
# renewed; connection faults of the process count too: they can keep a completion
# from the database until the lease is gone) while that execution was in progress:
# after it
# started, and before the job started again. Until then its outcome was still on its
# way to the database (a completion held, a reply lost); a fault of the same process
# after the job ran again explains nothing.
EXTRA_COMPLETIONS = """
SELECT x.job_id, x.attempt, j.attempts AS recorded_attempt,
       EXISTS (SELECT 1 FROM chaos_fault f
                WHERE f.scope = x.scope AND coalesce(f.until, f.at) >= x.started_at
                  AND f.at <= coalesce(
                      (SELECT min(n.started_at) FROM chaos_exec n
                        WHERE n.job_id = x.job_id AND n.started_at > x.started_at),
                      'infinity')
                  AND (f.pid = x.pid AND f.kind IN ('kill', 'exit', 'stop', 'partition',
                                                    'reset', 'delay', 'terminate', 'reply_lost')
                       OR f.pid IS NULL)) AS explained
  FROM chaos_exec x JOIN queuetopia_jobs j ON j.id = x.job_id
 WHERE x.scope = %(scope)s AND x.outcome = 'ok'
   AND NOT (j.state = 'done' AND x.attempt = j.attempts)
"""

# A done job whose recorded attempt has no successful execution: a completion from nowhere.
PHANTOM_COMPLETIONS = """
SELECT count(*) FROM queuetopia_jobs j
 WHERE j.scope = %(scope)s AND j.state = 'done' AND j.action = 'work'
   AND NOT EXISTS (SELECT 1 FROM chaos_exec x
                    WHERE x.job_id = j.id AND x.attempt = j.attempts AND x.outcome = 'ok')
"""

# One attempt executed twice: a claim was handed out twice.
SAME_ATTEMPT_TWICE = """
SELECT count(*) FROM (
    SELECT job_id, attempt FROM chaos_exec WHERE scope = %(scope)s
     GROUP BY job_id, attempt HAVING count(*) > 1) s
"""

# Executions cut off by a death, and how each was accounted: the next execution of the
# job must come with a higher attempt and the error "worker lost"; `recovery` is the
# time from the death to the next start of anything in that queue.
KILLED = (
    "WITH e AS ("
    + EXECUTIONS
    + """)
SELECT k.job_id, k.queue, k.attempt, k.surely_ended AS died_at,
       (SELECT n.attempt FROM e n WHERE n.job_id = k.job_id AND n.started_at > k.started_at
         ORDER BY n.started_at LIMIT 1) AS next_attempt,
       (SELECT n.prev_error FROM e n WHERE n.job_id = k.job_id AND n.started_at > k.started_at
         ORDER BY n.started_at LIMIT 1) AS next_prev_error,
       extract(epoch FROM (SELECT min(n.started_at) FROM e n
                            WHERE n.queue = k.queue AND n.started_at > k.started_at)
                          - k.surely_ended) AS recovery,
       (SELECT j.attempts FROM queuetopia_jobs j WHERE j.id = k.job_id) AS job_attempts,
       (SELECT j.state FROM queuetopia_jobs j WHERE j.id = k.job_id) AS job_state,
       (SELECT j.error FROM queuetopia_jobs j WHERE j.id = k.job_id) AS job_error,
       EXISTS (SELECT 1 FROM queuetopia_jobs j, jsonb_array_elements(j.attempt_log) a
                WHERE j.id = k.job_id AND (a->>'attempt')::int = k.attempt
                  AND a->>'error' LIKE 'worker lost%%') AS logged_lost
  FROM e k
 WHERE k.ended_at IS NULL AND k.surely_ended IS NOT NULL
"""
)

# Faults the harness makes on purpose (a table lock held, a snapshot held) are
# sessions named `chaos-...`: theirs are not the workers' open transactions.
IDLE_IN_TRANSACTION = """
SELECT client_port FROM pg_stat_activity
 WHERE state LIKE 'idle in transaction%%' AND now() - state_change > interval '1 second'
   AND application_name NOT LIKE 'chaos-%%'
"""


@dataclass
class Report:
    """What one chaos run measured; every count but the first few must be zero."""

    scenario: str
    jobs: int = 0
    executions: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    killed_executions: int = 0
    cut_off_overlaps: int = 0
    cut_off_overlap_max_s: float = 0.0
    # Of that, the longest an execution ran on once its stop or partition ended: how
    # soon a resumed worker stops what it may no longer run.
    cut_off_after_resume_max_s: float = 0.0
    reexecuted_after_fault: int = 0
    max_recovery_s: float = 0.0
    median_recovery_s: float = 0.0
    duration_s: float = 0.0
    # violations
    lost: int = 0
    duplicated: int = 0
    same_attempt_twice: int = 0
    phantom_completions: int = 0
    order_violations: int = 0
    overlaps: int = 0
    killed_not_counted: int = 0
    idle_in_transaction_seen: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def violations(self) -> dict[str, int]:
        names = (
            "lost",
            "duplicated",
            "same_attempt_twice",
            "phantom_completions",
            "order_violations",
            "overlaps",
            "killed_not_counted",
            "idle_in_transaction_seen",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n)}


RESULTS: list[Report] = []  # every report of the session, for the summary and docs


class Db:
    """The test's own connection to the chaos server; it reconnects after a restart."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def rows(
        self, statement: str, params: Any = None, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                    with self._conn.cursor(row_factory=dict_row) as cur:
                        cur.execute(statement, params)
                        return cur.fetchall() if cur.description else []
                except psycopg.OperationalError:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.1)

    def value(self, statement: str, params: Any = None, timeout: float = 60.0) -> Any:
        rows = self.rows(statement, params, timeout)
        return next(iter(rows[0].values())) if rows else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class IdleInTransactionWatch:
    """Samples pg_stat_activity for sessions idle in a transaction for over a second.

    `excuse(client_port)` may say that a session's client is frozen by a fault (a
    SIGSTOP, a partition): its transaction stands still because the fault holds it,
    not because the worker left it open. Such sessions count in `excused`."""

    def __init__(self, dsn: str, every: float = 0.5) -> None:
        self.db = Db(dsn)
        self.seen = 0
        self.excused = 0
        self.excuse: Callable[[int | None], bool] = lambda port: False
        self._stopped = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-idle-tx")
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            with contextlib.suppress(psycopg.Error):
                ports = [r["client_port"] for r in self.db.rows(IDLE_IN_TRANSACTION, timeout=1)]
                excused = sum(1 for port in ports if self.excuse(port))
                self.excused = max(self.excused, excused)
                self.seen = max(self.seen, len(ports) - excused)

    def stop(self) -> int:
        self._stopped.set()
        self._thread.join(timeout=5)
        self.db.close()
        return self.seen


def now() -> datetime:
    return datetime.now(UTC)


class Chaos:
    """One scenario: a scope of its own on the chaos server, its workers and faults."""

    def __init__(self, server: ChaosServer, scope: str, *, lock_ttl: float, poll: float) -> None:
        self.server = server
        self.scope = scope
        self.lock_ttl = lock_ttl
        self.poll = poll
        self.db = Db(server.dsn)
        self.producer = Queuetopia(dsn=server.dsn, scope=scope, pool_size=2)
        self.group = Workers(
            server.dsn,
            scope,
            QT_CHAOS_SCOPE=scope,
            QT_CHAOS_LOCK_TTL=str(lock_ttl),
            QT_CHAOS_LOG_DSN=server.dsn,
        )
        self.proxies: list[Proxy] = []
        self.watch = IdleInTransactionWatch(server.dsn)
        self.started = time.monotonic()
        self.jobs = 0

    # -- workers -------------------------------------------------------------------

    def worker(
        self,
        *,
        concurrency: int = 3,
        dsn: str | None = None,
        poll: float | None = None,
        shutdown_timeout: float = 30.0,
        name: str | None = None,
        ready: bool = True,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        args = [
            "--concurrency",
            str(concurrency),
            "--poll-interval",
            str(poll if poll is not None else self.poll),
            "--shutdown-timeout",
            str(shutdown_timeout),
            "--dsn",
            dsn or self.server.dsn,
        ]
        if name:
            args += ["--name", name]
        if prefetch := os.environ.get("QUEUETOPIA_CHAOS_PREFETCH"):
            args += ["--prefetch", prefetch]  # claiming ahead, on or off whatever the default
        saved = self.group.env
        if env:
            self.group.env = {**saved, **env}
        try:
            proc = self.group.start(*args, app=APP)
        finally:
            self.group.env = saved
        if ready:
            proc.wait_ready(timeout=60)
        return proc

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.group.started if w.popen.poll() is None]

    def kill(self, proc: WorkerProcess, sig: signal.Signals = signal.SIGKILL) -> None:
        """SIGKILL a worker and record the moment it was surely dead."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process dies only once resumed
        proc.popen.send_signal(sig)
        proc.wait(30)
        self.fault("kill", proc.pid, now())

    def fault(
        self,
        kind: str,
        pid: int | None,
        at: datetime,
        until: datetime | None = None,
        detail: str = "",
    ) -> None:
        self.db.rows(
            "INSERT INTO chaos_fault (scope, kind, pid, at, until, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (self.scope, kind, pid, at, until, detail),
        )

    def proxy(self) -> Proxy:
        proxy = Proxy(self.server.port)
        self.proxies.append(proxy)
        return proxy

    def drop_proxy(self, proxy: Proxy) -> None:
        """Close a proxy whose worker is gone."""
        proxy.close()
        with contextlib.suppress(ValueError):
            self.proxies.remove(proxy)

    def proxied_dsn(self, proxy: Proxy) -> str:
        return self.server.dsn_at(proxy.port)

    def stop_all(self, timeout: float = 60.0) -> list[int]:
        """SIGTERM every live worker (resuming stopped ones); return their exit codes."""
        alive = self.alive()
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.wait_ready(timeout=60)  # before its handler is installed, SIGTERM kills
            proc.send(signal.SIGTERM)
        return [proc.wait(timeout) for proc in alive]

    def close(self) -> None:
        for proc in self.group.started:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
        self.group.cleanup()
        for proxy in self.proxies:
            proxy.close()
        self.watch.stop()
        with contextlib.suppress(Exception):
            self.producer.close()
        self.db.close()

    # -- jobs ----------------------------------------------------------------------

    def enqueue(
        self,
        queue: str,
        n: int,
        action: str = "work",
        max_attempts: int | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> int:
        job = self.producer.create_job(
            queue, action, {"n": n, **params}, max_attempts=max_attempts, timeout=timeout
        )
        self.jobs += 1
        return job.id

    def enqueue_grid(
        self, queues: list[str], per_queue: int, params: Callable[[str, int], dict[str, Any]]
    ) -> int:
        """Enqueue `per_queue` jobs into each queue, interleaved, in one transaction."""
        with self.producer.connection() as conn, conn.transaction():
            for n in range(per_queue):
                for queue in queues:
                    self.producer.create_job(
                        queue, "work", {"n": n, **params(queue, n)}, connection=conn
                    )
        self.jobs += len(queues) * per_queue
        return len(queues) * per_queue

    def new_producer(self, dsn: str | None = None) -> None:
        """Replace the producer topia (and its pool) by a fresh one (on `dsn`)."""
        with contextlib.suppress(Exception):
            self.producer.close()
        self.producer = Queuetopia(dsn=dsn or self.server.dsn, scope=self.scope, pool_size=2)

    def count(self, state: str | None = None, action: str | None = None) -> int:
        return int(
            self.db.value(
                "SELECT count(*) FROM queuetopia_jobs WHERE scope = %s"
                " AND (%s::text IS NULL OR state = %s) AND (%s::text IS NULL OR action = %s)",
                (self.scope, state, state, action, action),
            )
        )

    def wait_done(self, total: int, timeout: float, action: str | None = None) -> float:
        began = time.monotonic()
        wait_for(
            lambda: self.count("done", action) >= total,
            timeout=timeout,
            interval=0.2,
            what=f"{total} jobs of {self.scope} to be done (done: {self.count('done', action)})",
        )
        return time.monotonic() - began

    def wait_released(self, timeout: float | None = None) -> None:
        """Wait until no live lease of the scope is left: a worker holds a queue with
        nothing to run for up to lock_ttl, then releases it (its row stays, expired),
        and a dead worker's lease runs out."""
        wait_for(
            lambda: (
                self.db.value(
                    "SELECT count(*) FROM queuetopia_leases WHERE scope = %s"
                    " AND locked_until > now()",
                    (self.scope,),
                )
                == 0
            ),
            timeout=timeout or self.lock_ttl + self.poll + 30,
            interval=0.1,
            what="every lease to be released",
        )

    def executions(self, **where: Any) -> list[dict[str, Any]]:
        clauses = "".join(f" AND {k} = %({k})s" for k in where)
        return self.db.rows(
            "SELECT * FROM chaos_exec WHERE scope = %(scope)s" + clauses + " ORDER BY started_at",
            {"scope": self.scope, **where},
        )

    def job(self, job_id: int) -> dict[str, Any]:
        [row] = self.db.rows("SELECT * FROM queuetopia_jobs WHERE id = %s", (job_id,))
        return row

    # -- connections of a worker -------------------------------------------------------

    def backends(self, proc: WorkerProcess) -> list[dict[str, Any]]:
        """The worker's sessions in pg_stat_activity, matched by its TCP client ports."""
        ports = {
            c.laddr.port
            for c in psutil.Process(proc.pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == self.server.port
        }
        return [
            r
            for r in self.db.rows(
                "SELECT pid, client_port, application_name, state, query, backend_start"
                " FROM pg_stat_activity WHERE client_port IS NOT NULL"
            )
            if r["client_port"] in ports
        ]

    # -- checking ------------------------------------------------------------------

    def check(self, scenario: str, *, expect_all_done: bool = True, **extra: Any) -> Report:
        """Measure the invariants over the execution log; record and return the report."""
        p = {"scope": self.scope}
        faults = self.db.rows(
            "SELECT kind, count(*) AS n FROM chaos_fault WHERE scope = %(scope)s GROUP BY kind", p
        )
        overlaps = self.db.rows(OVERLAPS, p)
        extra_done = self.db.rows(EXTRA_COMPLETIONS, p)
        killed = self.db.rows(KILLED, p)
        not_counted = _not_counted(killed)
        order = self.db.rows(ORDER_LOG, p)
        if any(o["explained"] for o in order):
            extra = {**extra, "order_cut_off": sum(1 for o in order if o["explained"])}
        if unended := sum(1 for o in overlaps if o["explained"] and o["never_ended"]):
            # A frozen process's execution whose end was never logged: how long it ran
            # on is unknown (tests/chaos/chaos_app.py logs the end in a `finally`,
            # which the interrupt that cuts it off may itself cut short).
            extra = {**extra, "cut_off_never_ended": unended}
        recoveries = [float(k["recovery"]) for k in killed if k["recovery"] is not None]
        explained = [o for o in overlaps if o["explained"]]
        report = Report(
            scenario=scenario,
            jobs=self.count(),
            executions=int(
                self.db.value("SELECT count(*) FROM chaos_exec WHERE scope = %s", (self.scope,))
            ),
            faults={r["kind"]: int(r["n"]) for r in faults},
            killed_executions=len(killed),
            cut_off_overlaps=len(explained),
            cut_off_overlap_max_s=round(
                max((float(o["seconds"] or 0) for o in explained), default=0.0), 3
            ),
            cut_off_after_resume_max_s=round(
                max((float(o["after_resume"] or 0) for o in explained), default=0.0), 3
            ),
            reexecuted_after_fault=sum(1 for r in extra_done if r["explained"]),
            max_recovery_s=round(max(recoveries, default=0.0), 3),
            median_recovery_s=round(statistics.median(recoveries), 3) if recoveries else 0.0,
            duration_s=round(time.monotonic() - self.started, 1),
            lost=(self.count() - self.count("done")) if expect_all_done else 0,
            duplicated=sum(1 for r in extra_done if not r["explained"]),
            same_attempt_twice=int(self.db.value(SAME_ATTEMPT_TWICE, p)),
            phantom_completions=int(self.db.value(PHANTOM_COMPLETIONS, p)),
            order_violations=sum(1 for o in order if not o["explained"])
            + int(self.db.value(ORDER_VIOLATIONS_JOBS, p)),
            overlaps=len(overlaps) - len(explained),
            killed_not_counted=len(not_counted),
            idle_in_transaction_seen=self.watch.seen,
            extra=extra,
        )
        RESULTS.append(report)
        _write_results()
        return report

    def assert_clean(self, report: Report) -> None:
        assert report.violations() == {}, self.explain(report)

    def snapshot(self) -> str:
        """The database's view right now: sessions, locks waited for, leases, jobs."""
        lines = ["sessions:"]
        for r in self.db.rows(
            "SELECT pid, application_name, client_port, state, wait_event_type, wait_event,"
            " now() - state_change AS for, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
            " AS query FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        ):
            lines.append(f"  {r}")
        lines.append("leases:")
        for r in self.db.rows(
            "SELECT queue, owner, locked_until, locked_until > now() AS live"
            " FROM queuetopia_leases WHERE scope = %s",
            (self.scope,),
        ):
            lines.append(f"  {r}")
        lines.append("jobs:")
        for r in self.db.rows(
            "SELECT id, queue, state, attempts, attempted_by, lease_id, next_attempt_at"
            " FROM queuetopia_jobs WHERE scope = %s ORDER BY id LIMIT 20",
            (self.scope,),
        ):
            lines.append(f"  {r}")
        for r in self.db.rows(
            "SELECT queue, ready_at, paused FROM queuetopia_queues WHERE scope = %s", (self.scope,)
        ):
            lines.append(f"  queue {r}")
        for proc in self.group.started:
            tail = [
                f"{line['time']} {line['level']} {line['message'][:200]}"
                for line in self.log_lines(proc)
            ][-15:]
            lines += [f"worker {proc.pid}: {t}" for t in tail]
        return "\n".join(lines)

    def slow_recoveries(self, bound: float) -> str:
        """The kills whose queue took longer than `bound` to run again, with the logs."""
        slow = [
            k
            for k in self.db.rows(KILLED, {"scope": self.scope})
            if k["recovery"] is not None and float(k["recovery"]) >= bound
        ]
        lines = [f"slow recovery: {k}" for k in slow]
        for k in slow:
            lines += [
                f"  then: {e['started_at']} job {e['job_id']} attempt {e['attempt']} pid {e['pid']}"
                for e in self.executions(queue=k["queue"])
                if e["started_at"] > k["died_at"]
            ][:3]
        faults = self.db.rows(
            "SELECT kind, pid, at FROM chaos_fault WHERE scope = %s ORDER BY at", (self.scope,)
        )
        lines += [f"fault: {f}" for f in faults]
        return "\n".join(lines) + "\n" + self.snapshot()

    def explain(self, report: Report) -> str:
        """The evidence behind a report's violations, for the failure message."""
        p = {"scope": self.scope}
        lines = [repr(report)]
        unended = self.db.rows(
            "SELECT * FROM chaos_exec WHERE scope = %(scope)s AND ended_at IS NULL", p
        )
        lines += [f"never ended: {r}" for r in unended[:10]]
        overlaps = [o for o in self.db.rows(OVERLAPS, p) if not o["explained"]]
        lines += [f"overlap: {o}" for o in overlaps[:10]]
        extra = [r for r in self.db.rows(EXTRA_COMPLETIONS, p) if not r["explained"]]
        lines += [f"completed twice: {r}" for r in extra[:10]]
        for r in extra[:3]:
            lines += self._history(r["job_id"])
        for o in [o for o in self.db.rows(ORDER_LOG, p) if not o["explained"]][:3]:
            lines.append(f"out of order: {o}")
            lines += self._history(o["job_id"])
        for k in _not_counted(self.db.rows(KILLED, p))[:3]:
            lines.append(f"killed, not counted: {k}")
            lines += self._history(k["job_id"])
        pids = {r["pid"] for r in unended} | {o["first_pid"] for o in overlaps}
        for proc in self.group.started:
            if proc.pid in pids and proc.popen.poll() is None:
                proc.send(signal.SIGUSR1)  # tests/chaos/chaos_app.py dumps its stacks
        time.sleep(0.5)
        for proc in self.group.started:
            if proc.pid in pids:
                stacks = proc.log().split("Thread 0x", 1)
                if len(stacks) > 1:
                    lines.append(f"worker {proc.pid} stacks:\nThread 0x{stacks[1][:6000]}")
                warned = [
                    f"{line['time']} {line['message']}"
                    for line in self.log_lines(proc)
                    if line["level"] != "info"
                ]
                lines += [f"worker {proc.pid}: {w}" for w in warned[:30]]
        return "\n".join(lines)

    def _history(self, job_id: int) -> list[str]:
        """A job's executions, the faults around them, and what workers logged of it."""
        execs = self.db.rows(
            "SELECT pid, attempt, started_at, ended_at, outcome, prev_error FROM chaos_exec"
            " WHERE scope = %s AND job_id = %s ORDER BY started_at",
            (self.scope, job_id),
        )
        lines = [f"  job {job_id} execution: {e}" for e in execs]
        if execs:
            faults = self.db.rows(
                "SELECT kind, pid, at, until, detail FROM chaos_fault WHERE scope = %s"
                " AND coalesce(until, at) >= %s - interval '5 seconds'"
                " AND at <= %s + interval '1 second' ORDER BY at",
                (self.scope, execs[0]["started_at"], execs[-1]["started_at"]),
            )
            lines += [f"  fault: {f}" for f in faults]
        for proc in self.group.started:
            for line in self.log_lines(proc):
                if f"job {job_id} " in line["message"] or line.get("job_id") == job_id:
                    lines.append(f"  worker {proc.pid}: {line['time']} {line['message']}")
        return lines

    def assert_drained(self) -> None:
        """No live lease and no running job left once the work is done."""
        self.wait_released()
        running = self.db.value(
            "SELECT count(*) FROM queuetopia_jobs WHERE scope = %s AND state = 'running'",
            (self.scope,),
        )
        assert running == 0

    def assert_no_password_in_logs(self) -> None:
        for proc in self.group.started:
            assert self.server.password not in proc.log(), f"password in worker {proc.pid}'s log"

    def log_lines(self, proc: WorkerProcess) -> list[dict[str, Any]]:
        lines = []
        for line in proc.log().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines


def _not_counted(killed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The executions a death cut off whose attempt was not counted as "worker lost":
    not in the job's attempt log, nor in the error the next execution saw (nor, if
    none came, in the job's last error). The attempt log is needed where the next
    attempts never reached the action (interrupted as they started): the next
    execution then saw their error."""
    return [
        k
        for k in killed
        if not (
            k["logged_lost"]
            or (
                k["next_attempt"] is not None
                and k["next_attempt"] > k["attempt"]
                and (k["next_prev_error"] or "").startswith("worker lost")
            )
            or (
                k["next_attempt"] is None
                and k["job_attempts"] >= k["attempt"]
                and (k["job_error"] or "").startswith("worker lost")
            )
        )
    ]


def _write_results() -> None:
    target = os.environ.get("QUEUETOPIA_CHAOS_REPORT")
    if target:
        Path(target).write_text(json.dumps([asdict(r) for r in RESULTS], indent=2, default=str))
