"""A PostgreSQL server of the chaos suite's own, which the tests may restart and crash.

It is the PostgreSQL that the `pgserver` package ships, run with `initdb` and `pg_ctl`
directly: it listens on 127.0.0.1 (so a proxy can sit between workers and it) and
asks TCP clients for a password (so every test also checks that no password leaks
into a log line). As root, PostgreSQL refuses to run, so the server runs as the system
user `pgserver`, like the `pgserver` package does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

SYSTEM_USER = "pgserver"
SUPERUSER = "postgres"


def _bin(name: str) -> str:
    import pgserver  # the embedded extra; its binaries run our own server

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dsn_for(port: int, user: str, password: str, dbname: str = "postgres", **extra: Any) -> str:
    """A URI DSN; SSL and GSS encryption off so that a proxy can read the protocol."""
    options = {"sslmode": "disable", "gssencmode": "disable", **extra}
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"postgresql://{quote(user)}:{quote(password)}@127.0.0.1:{port}/{dbname}?{query}"


class ChaosServer:
    """initdb, start, restart (fast or immediate), stop; TCP on 127.0.0.1 with passwords."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="qt-chaos-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.password = "chaos-" + secrets.token_hex(8)  # looked for in every log line
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = SYSTEM_USER
            try:
                pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                subprocess.run(["useradd", "-s", "/bin/sh", SYSTEM_USER], check=True)
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chmod(self.root, 0o755)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def dsn(self) -> str:
        return dsn_for(self.port, SUPERUSER, self.password)

    @property
    def primary_dsn(self) -> str:
        """The server to flip read-only (a pair's current primary)."""
        return self.dsn

    def dsn_at(self, port: int) -> str:
        """This server's DSN with another port: a proxy in front of it."""
        return dsn_for(port, SUPERUSER, self.password)

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        # pg_ctl's children inherit stdout: files, not pipes, or the call never returns.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(
                list(args), user=self._user, stdout=out, stderr=out, timeout=timeout, check=False
            )
            if proc.returncode != 0:
                out.seek(0)
                raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {out.read()}")

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._run(
            _bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "300",
            "fsync": "off",  # a crash of PostgreSQL loses nothing; only an OS crash would
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %u '",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def pg_ctl(self, *args: str, timeout: float = 60.0) -> None:
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(timeout)),
            *args,
            timeout=timeout + 10,
        )

    def start(self) -> None:
        self.pg_ctl("start")
        self.wait_ready()

    def restart(self, mode: str = "fast") -> float:
        """Restart (`fast`: clean shutdown; `immediate`: a crash, then recovery).
        Returns the seconds the server was away."""
        began = time.monotonic()
        self.pg_ctl("-m", mode, "restart")
        self.wait_ready()
        return time.monotonic() - began

    def outage(self, seconds: float, mode: str = "immediate") -> None:
        """Stop the server (`immediate`: a crash), keep it down, start it again."""
        self.pg_ctl("-m", mode, "stop")
        time.sleep(seconds)
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.pg_ctl("-m", "immediate", "stop", timeout=30)

    def ensure_running(self) -> None:
        """Start the server if a test left it stopped."""
        try:
            with psycopg.connect(self.dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            self.pg_ctl("start")
            self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=3) as conn:
                    conn.execute("SELECT 1")
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
