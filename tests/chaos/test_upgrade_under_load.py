"""Scenario 22, a rolling upgrade under load (docs/migrations.md, "Rolling upgrade"):
workers and a producer of the first engine (schema version 4, the release before
Engine v2, exported from git) run jobs on 8 queues; migration 5 is applied under them;
a new worker joins, the producer is replaced by a new one; the new worker stops
(releasing its leases, which the old workers then take their own way); an old worker
is killed in the middle of a job, the other stopped, and a new worker recovers. Every
job done, exactly once but for the killed attempt (run again as "worker lost"), in
order, never two of one queue at once."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from queuetopia import Queuetopia, migrations

from ..helpers import wait_for
from .server import SUPERUSER, ChaosServer, dsn_for

ROOT = Path(__file__).resolve().parents[2]
FIRST_ENGINE = "4d8dee3a8d2684a852a10b5ec37e005408188176"  # schema version 4, engine v1
QUEUES = 8
ROUNDS = 20  # jobs per queue per producer
APP = "tests.chaos.upgrade_app:topia"
LOG_TABLE = """
CREATE TABLE upg_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job_id bigint,
    queue text, n int, attempt int, pid int, engine text, library text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz)
"""


@pytest.fixture(scope="module")
def first_engine() -> Iterator[Path]:
    """The first engine's library and command line, from this repository's history."""
    out = Path(tempfile.mkdtemp(prefix="qt-engine-v1-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", FIRST_ENGINE, "queuetopia", "queuetopia_cli",
             "migrations"],
            capture_output=True, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("git is not installed: the first engine comes from this repository's history")
    if archive.returncode != 0:
        pytest.skip(f"commit {FIRST_ENGINE[:7]} (the first engine) is not in this clone's history")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    yield out
    shutil.rmtree(out, ignore_errors=True)


class Upgrade:
    """The processes of one rolling upgrade, on a database of its own."""

    def __init__(self, server: ChaosServer, first_engine: Path) -> None:
        self.name = f"upgrade_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name}")
        self.dsn = dsn_for(server.port, SUPERUSER, server.password, self.name)
        self.first_engine = first_engine
        self.cwd = Path(tempfile.mkdtemp(prefix="qt-upgrade-"))  # not ROOT: sys.path[0]
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, engine: str) -> dict[str, str]:
        path = f"{self.first_engine}:{ROOT}" if engine == "v1" else str(ROOT)
        return {**os.environ, "PYTHONPATH": path, "QUEUETOPIA_DSN": self.dsn, "UPG_ENGINE": engine}

    def python(self, engine: str, code: str) -> subprocess.Popen[bytes]:
        log = (self.cwd / f"{engine}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=self.cwd, env=self.env(engine), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def worker(self, engine: str) -> subprocess.Popen[bytes]:
        return self.python(
            engine,
            "import sys; from queuetopia_cli.main import main;"
            f" sys.argv = ['queuetopia', 'worker', '{APP}', '--concurrency', '4',"
            " '--poll-interval', '1', '--log-format', 'json']; main()",
        )

    def produce(self, engine: str, first: int) -> subprocess.Popen[bytes]:
        return self.python(
            engine,
            "import random, time; from tests.chaos.upgrade_app import topia\n"
            f"for n in range({first}, {first + ROUNDS}):\n"
            f"    for q in range({QUEUES}):\n"
            "        topia.create_job(f'q{q}', 'step', {'n': n, 'ms': random.randint(20, 100)})\n"
            "    time.sleep(0.3)\n",
        )

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql.encode(), params)
            return cur.fetchall() if cur.description else []

    def running(self, engine: str, since: float) -> list[tuple[int, int]]:
        """(pid, job id) of the executions of `engine` under way, started after `since`."""
        return [
            (pid, job)
            for pid, job in self.rows(
                "SELECT pid, job_id FROM upg_log WHERE engine = %s AND ended_at IS NULL"
                " AND started_at > to_timestamp(%s)",
                (engine, since),
            )
        ]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def upgrade(chaos_server: ChaosServer, first_engine: Path) -> Iterator[Upgrade]:
    made = Upgrade(chaos_server, first_engine)
    yield made
    made.close()
    shutil.rmtree(made.cwd, ignore_errors=True)


def test_migration_5_applied_under_workers_of_the_first_engine(upgrade: Upgrade) -> None:
    migrate = upgrade.python("v1", "from tests.chaos.upgrade_app import topia; topia.migrate()")
    assert migrate.wait(60) == 0
    upgrade.rows(LOG_TABLE)
    assert upgrade.rows("SELECT max(version) FROM queuetopia_versions") == [(4,)]
    old = [upgrade.worker("v1"), upgrade.worker("v1")]
    producer = upgrade.produce("v1", 0)
    wait_for(lambda: len(upgrade.rows("SELECT 1 FROM upg_log")) >= 20, timeout=60, what="v1 jobs")

    with Queuetopia(dsn=upgrade.dsn, scope="upgrade") as topia:
        # Every version after 4, under the old workers and the old producer.
        assert topia.migrate() == [m.version for m in migrations.all_migrations() if m.version > 4]
    migrated = time.time()
    new1 = upgrade.worker("v2")
    assert producer.wait(60) == 0
    producer = upgrade.produce("v2", ROUNDS)
    wait_for(lambda: upgrade.running("v2", migrated), timeout=60, what="the new worker")

    new1.send_signal(signal.SIGTERM)  # its leases released: the old workers take them
    assert new1.wait(60) == 0
    stopped = time.time()
    victim: list[tuple[int, int]] = []
    wait_for(
        lambda: victim.extend(upgrade.running("v1", stopped)) or victim,
        timeout=60, interval=0.01, what="an old worker running a job",
    )  # fmt: skip
    pid = victim[0][0]
    [killed] = [p for p in old if p.pid == pid]
    killed.kill()
    killed_at = time.time()
    [other] = [p for p in old if p is not killed]
    other.send_signal(signal.SIGTERM)  # only a new worker is left to recover the job
    assert other.wait(60) == 0
    new2 = upgrade.worker("v2")
    assert producer.wait(60) == 0
    total = 2 * ROUNDS * QUEUES
    wait_for(
        lambda: upgrade.rows("SELECT count(*) FROM queuetopia_jobs WHERE state = 'done'")
        == [(total,)],
        timeout=120, what="every job done",
    )  # fmt: skip
    new2.send_signal(signal.SIGTERM)
    assert new2.wait(60) == 0

    _check(upgrade, total, pid, killed_at, migrated)


def _check(upgrade: Upgrade, total: int, killed: int, killed_at: float, migrated: float) -> None:
    execs = upgrade.rows(
        "SELECT queue, job_id, n, engine, library, extract(epoch FROM started_at),"
        " extract(epoch FROM ended_at), pid FROM upg_log ORDER BY queue, started_at, id"
    )
    for _, _, _, engine, library, _, _, _ in execs:  # each process ran the engine it says
        assert (engine == "v1") == str(library).startswith(str(upgrade.first_engine)), library
    after = {row[3] for row in execs if float(row[5]) > migrated}
    assert after == {"v1", "v2"}, "both engines must have run jobs after the migration"
    ran: dict[int, int] = {}
    for row in execs:
        ran[row[1]] = ran.get(row[1], 0) + (row[6] is not None)
    assert len(ran) == total and set(ran.values()) == {1}, "each job ends once"
    cut = [(row[1], row[7]) for row in execs if row[6] is None]  # the killed worker's
    assert cut and {pid for _, pid in cut} == {killed}, cut
    for job, _ in cut:
        [(attempts, log)] = upgrade.rows(
            "SELECT attempts, attempt_log::text FROM queuetopia_jobs WHERE id = %s", (job,)
        )
        assert attempts == 2 and "worker lost" in log, (job, attempts, log)
    by_queue: dict[str, list[tuple[Any, ...]]] = {}
    for row in execs:
        by_queue.setdefault(row[0], []).append(row)
    for queue, rows in by_queue.items():
        for a, b in itertools.pairwise(rows):
            assert b[2] >= a[2], f"{queue}: n={b[2]} started after n={a[2]}"
            end = float(a[6]) if a[6] is not None else killed_at
            assert float(b[5]) >= end, f"{queue}: job {b[1]} started before job {a[1]} ended"
