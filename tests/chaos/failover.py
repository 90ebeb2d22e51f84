"""A primary and a streaming standby of the chaos suite's own, for failover scenarios.

Both are `ChaosServer`s on 127.0.0.1. The standby is made with `pg_basebackup -R`
from the primary, so it inherits the primary's configuration, `synchronous_standby_names`
included (the hang trap of docs/deploying.md). It streams from the primary through a
`Proxy`, so that a test can cut replication (blackhole) and show what an asynchronous
standby loses. Clients use a multi-host DSN with `target_session_attrs=read-write`:
libpq tries both servers and keeps the one that accepts writes.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psycopg

from queuetopia import Queuetopia

from .harness import Chaos
from .proxy import Proxy
from .server import SUPERUSER, ChaosServer, _bin, dsn_for

STANDBY_NAME = "qt_standby"
DESCRIBE = """
SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('default_transaction_read_only') AS read_only,
       current_setting('synchronous_standby_names') AS sync_names,
       (SELECT string_agg(application_name || ' ' || state || ' ' || sync_state, ', ')
          FROM pg_stat_replication) AS replicas
"""


class FailoverPair:
    """A primary, a standby streaming from it through a proxy, and a multi-host DSN."""

    def __init__(self, *, synchronous: bool) -> None:
        self.synchronous = synchronous
        self.primary = ChaosServer()
        self.standby = ChaosServer()
        self.standby.password = self.primary.password  # pg_basebackup copies the roles
        self.replication: Proxy | None = None
        self.promoted = False

    def dsn(self, **extra: str) -> str:
        """Both servers, the writable one wins: what producers and workers are given."""
        options = {
            "sslmode": "disable",
            "gssencmode": "disable",
            "target_session_attrs": "read-write",
            "connect_timeout": "3",
            **extra,
        }
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"postgresql://{SUPERUSER}:{quote(self.primary.password)}@{hosts}/postgres?{query}"

    def start(self) -> None:
        self.primary.init()
        with (self.primary.data / "postgresql.conf").open("a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 5\nwal_keep_size = '64MB'\n")
            if self.synchronous:
                # In postgresql.conf, as most set-ups have it: the standby inherits it.
                conf.write(f"synchronous_standby_names = '{STANDBY_NAME}'\n")
                conf.write("synchronous_commit = on\n")
        self.primary.start()
        self._make_standby()

    def _make_standby(self, wanted: str | None = None) -> None:
        """`pg_basebackup -R` of the primary into the standby, streaming through a
        proxy of its own; until the primary sees it streaming (as `wanted`)."""
        if self.replication is not None:
            self.replication.close()
        self.replication = Proxy(self.primary.port)
        shutil.rmtree(self.standby.data, ignore_errors=True)
        self.standby._run(
            _bin("pg_basebackup"),
            "-D",
            str(self.standby.data),
            "-h",
            str(self.primary.root),  # the primary's socket directory: trusted, no password
            "-p",
            str(self.primary.port),
            "-U",
            SUPERUSER,
            "-R",
            "-X",
            "stream",
            "--no-sync",
            # At once, not spread: under a 20-minute soak's load a spread checkpoint
            # kept the backup waiting past its 120 s (seed 2747876437).
            "--checkpoint=fast",
            timeout=120,
        )
        conninfo = (
            f"host=127.0.0.1 port={self.replication.port} user={SUPERUSER}"
            f" password={self.primary.password} sslmode=disable gssencmode=disable"
            f" application_name={STANDBY_NAME}"
        )
        with (self.standby.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.standby.port}\n")
            conf.write(f"unix_socket_directories = '{self.standby.root}'\n")
        with (self.standby.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"primary_conninfo = '{conninfo}'\n")
        self.standby.pg_ctl("start")
        self.standby.wait_ready()
        self.wait_streaming(wanted)

    def fail_over(self, detect_s: float, on_promoted: Callable[[], None]) -> float:
        """A whole failover as a failover manager (Patroni, say) runs it: the primary
        crashes; after `detect_s` the standby is promoted and becomes the primary
        (`on_promoted` then points the clients' proxies at it); it commits without a
        synchronous standby until the old primary, rebuilt from it, streams again as its
        standby. With synchronous replication nothing acknowledged is lost. Returns the
        seconds from the crash to the promoted server accepting writes."""
        self.kill_primary()
        crashed = time.monotonic()
        if self.replication is not None:
            self.replication.set_mode("reset")
        time.sleep(detect_s)
        self.promote()
        promoted = time.monotonic()
        self.primary, self.standby = self.standby, self.primary
        if self.synchronous:
            self._set_sync("''")
        on_promoted()
        self._make_standby("async")
        if self.synchronous:
            self._set_sync(None)
            self.wait_streaming()
        return promoted - crashed

    def _set_sync(self, names: str | None) -> None:
        """Set (None: reset to postgresql.conf's) the primary's synchronous standbys."""
        with psycopg.connect(self.primary.dsn, autocommit=True) as conn:
            if names is None:
                conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
            else:
                conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = {names}")
            conn.execute("SELECT pg_reload_conf()")

    def wait_streaming(self, wanted: str | None = None, timeout: float = 60.0) -> None:
        """Until the primary sees its standby streaming as `wanted` (by default `sync`
        in sync mode, else `async`)."""
        wanted = wanted or ("sync" if self.synchronous else "async")
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(self.primary.dsn, autocommit=True) as conn:
                states = conn.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchall()
            if (wanted,) in states:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the standby is not streaming ({states})")
            time.sleep(0.1)

    def ensure_replicating(self) -> None:
        """After a run of faults: the standby streams again, rebuilt if it does not
        (a failover whose rebuild failed leaves the pair half-built; in sync mode its
        primary then waits for a standby that never comes, and every commit hangs)."""
        try:
            self.wait_streaming(timeout=30)
            return
        except (AssertionError, psycopg.Error):
            pass
        if self.synchronous:
            self._set_sync("''")  # the commits waiting meanwhile complete
        self.standby.stop()
        self._make_standby("async")
        if self.synchronous:
            self._set_sync(None)
            self.wait_streaming()

    def kill_primary(self) -> None:
        """`pg_ctl stop -m immediate`: the primary crashes; its last commits are where
        replication left them."""
        self.primary.pg_ctl("-m", "immediate", "stop")

    def promote(self) -> float:
        """Promote the standby; return the seconds until it accepts writes."""
        began = time.monotonic()
        self.standby.pg_ctl("promote")
        deadline = began + 60
        while True:
            with psycopg.connect(self.standby.dsn, autocommit=True) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    break
            if time.monotonic() > deadline:
                raise AssertionError("the standby was not promoted")
            time.sleep(0.05)
        self.promoted = True
        return time.monotonic() - began

    def release_sync_wait(self) -> None:
        """What an operator does on a promoted standby that waits for a synchronous
        standby of its own: stop waiting (commits hung so far complete)."""
        with psycopg.connect(self.standby.dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
            conn.execute("SELECT pg_reload_conf()")

    def describe(self) -> str:
        """Each server's role, what makes it refuse writes, and its replicas: for the
        message of a run that did not drain."""
        lines = []
        for role, server in (("primary", self.primary), ("standby", self.standby)):
            try:
                with psycopg.connect(server.dsn, autocommit=True, connect_timeout=3) as conn:
                    row = conn.execute(DESCRIBE).fetchone()
                lines.append(f"{role} :{server.port} {row}")
            except psycopg.Error as exc:
                lines.append(f"{role} :{server.port} unreachable: {exc}")
            auto = server.data / "postgresql.auto.conf"
            if auto.exists():
                settings = [
                    line.strip()
                    for line in auto.read_text().splitlines()
                    if line.strip() and not line.startswith(("#", "primary_conninfo"))
                ]
                lines.append(f"  postgresql.auto.conf: {settings}")
        return "\n".join(lines)

    def cleanup(self) -> None:
        if self.replication is not None:
            self.replication.close()
        keep = os.environ.get("QUEUETOPIA_CHAOS_KEEP")
        for server in (self.standby, self.primary):
            server.stop()
            if keep and server.log.exists():  # the servers' logs, for a run to look into
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log, Path(keep) / f"server-{server.port}.log")
            shutil.rmtree(server.root, ignore_errors=True)


class Cluster:
    """What the harness needs of a server, for the pair behind a multi-host DSN;
    `attrs` is the DSN's target_session_attrs (`primary`: the writable server even
    while a read-only spell makes it refuse writes)."""

    def __init__(self, pair: FailoverPair, attrs: str = "read-write") -> None:
        self.pair = pair
        self.dsn = pair.dsn(target_session_attrs=attrs)
        self.password = pair.primary.password

    @property
    def port(self) -> int:
        return self.pair.primary.port

    @property
    def primary_dsn(self) -> str:
        return self.pair.primary.dsn

    def dsn_at(self, port: int) -> str:
        return dsn_for(port, SUPERUSER, self.password)

    def restart(self, mode: str = "fast") -> float:
        return self.pair.primary.restart(mode)

    def ensure_running(self) -> None:
        self.pair.primary.ensure_running()
        self.pair.ensure_replicating()


LOG_COLUMNS = (
    "exec_id, scope, job_id, queue, n, attempt, pid, node, prev_error,"
    " started_at, ended_at, outcome"
)


def copy_log(scope: str, log_dsn: str, dsn: str) -> None:
    """Copy a scope's execution log from the log server to the pair, for the checks."""
    with psycopg.connect(log_dsn, autocommit=True) as src:
        rows = src.execute(
            f"SELECT {LOG_COLUMNS} FROM chaos_exec WHERE scope = %s", (scope,)
        ).fetchall()
    placeholders = ", ".join(["%s"] * 12)
    with psycopg.connect(dsn, autocommit=True) as dst:
        dst.cursor().executemany(
            f"INSERT INTO chaos_exec ({LOG_COLUMNS}) VALUES ({placeholders})"
            " ON CONFLICT (exec_id) DO NOTHING",
            rows,
        )


def chaos_on(
    pair: FailoverPair,
    log_dsn: str,
    name: str,
    *,
    lock_ttl: float,
    commit_timeout: float,
    attrs: str = "read-write",
) -> Chaos:
    """A scope on the pair: the harness on the multi-host DSN (`attrs`), the producer
    on the one users are told to use, the execution log on `log_dsn` (a server no
    fault touches: the log must outlive the failovers it describes)."""
    scope = f"{name}-{random.randrange(1 << 30)}"
    chaos = Chaos(Cluster(pair, attrs), scope, lock_ttl=lock_ttl, poll=1.0)  # type: ignore[arg-type]
    chaos.group.env["QT_CHAOS_LOG_DSN"] = log_dsn
    chaos.group.env["QT_CHAOS_COMMIT_TIMEOUT"] = str(commit_timeout)
    chaos.producer.close()
    chaos.producer = Queuetopia(
        dsn=pair.dsn(), scope=scope, pool_size=2, commit_timeout=commit_timeout
    )
    return chaos
