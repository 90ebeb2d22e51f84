"""A real PgBouncer (the Debian package) in transaction mode in front of the chaos
server, started by the tests on a free port of 127.0.0.1 with a configuration in a
temporary directory. Clients are trusted (the userlist names them); PgBouncer logs in
to PostgreSQL with the server's password.

Two databases: `postgres`, pooled for everyone (a few server connections shared by all
clients), and `leakcheck`, with a single server connection, so that a test can prove
that session state set by one client is seen by the next one (the check can fail).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from .server import SUPERUSER, SYSTEM_USER, ChaosServer, _free_port


def pgbouncer_binary() -> str:
    """The pgbouncer binary; without it skip (with a reason), or fail in CI."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        reason = "PgBouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must install it (.ci/run)")
        pytest.skip(reason)
    return found


class PgBouncer:
    def __init__(self, server: ChaosServer, *, pool_size: int = 3) -> None:
        self.server = server
        self.root = Path(tempfile.mkdtemp(prefix="qt-pgbouncer-"))
        self.port = _free_port()
        self.log = self.root / "pgbouncer.log"
        upstream = f"host=127.0.0.1 port={server.port} user={SUPERUSER} password={server.password}"
        (self.root / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"postgres = {upstream} dbname=postgres pool_size={pool_size}\n"
            f"leakcheck = {upstream} dbname=postgres pool_size=1\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 500\n"
            f"logfile = {self.log}\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        self._user: str | None = None
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            self._user = SYSTEM_USER
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chmod(self.root, 0o755)
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.proc = subprocess.Popen(
            [pgbouncer_binary(), str(self.root / "pgbouncer.ini")],
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def dsn(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"
            "?sslmode=disable&gssencmode=disable"
        )

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                with psycopg.connect(self.dsn(), prepare_threshold=None, connect_timeout=3):
                    return
            except (OSError, psycopg.OperationalError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
