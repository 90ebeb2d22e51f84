"""The chaos suite's proxy itself: a harness that fails quietly makes findings that are
not the engine's (tests/chaos/proxy.py)."""

from __future__ import annotations

import contextlib
import os

import psycopg

from .proxy import Proxy
from .server import ChaosServer


def test_the_proxy_forwards_beyond_1024_descriptors(chaos_server: ChaosServer) -> None:
    """A 20-minute soak holds more than 1,024 descriptors; select() refuses those, and
    the proxy's pumps died, leaving their connections hung (seed 2478645721)."""
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    proxy = Proxy(chaos_server.port)
    try:
        assert proxy._listener.fileno() > 1024  # and so are the links' sockets
        dsn = chaos_server.dsn_at(proxy.port)
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    finally:
        proxy.close()
        for fd in spare:
            with contextlib.suppress(OSError):
                os.close(fd)
