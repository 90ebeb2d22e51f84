"""A TCP proxy on 127.0.0.1 between workers and PostgreSQL that injects network faults.

Modes, for every connection through it:

* ``pass``: bytes flow both ways;
* ``delay``: each chunk waits ``delay`` seconds before it is forwarded (latency);
* ``blackhole``: nothing flows either way, yet no connection is closed: a half-open
  partition. The client's kernel still sees a live peer, so only the application can
  notice (no RST, no FIN, keepalives answered). Back in ``pass`` mode the held bytes
  flow again, like TCP retransmission after a partition heals;
* ``reset``: every connection is closed with a RST, and new ones are reset at once.

It also reads the PostgreSQL protocol (SSL and GSS encryption are refused, so the
stream is plain) to act on one statement, chosen by a piece of its SQL text, also when
psycopg sends it as a prepared statement:

* ``hold_statement``: the statement is held before the server sees it;
* ``hold_reply``: the statement runs and commits (the server says ReadyForQuery), but
  its reply is held before the client sees it.

A held rule sets ``rule.fired`` and waits for ``rule.release(forward=...)``: forward the
held bytes, or reset the connection (the statement never ran, or ran but its reply is
lost).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


@dataclass
class Rule:
    """Act on the next statement whose SQL text contains `pattern`."""

    pattern: bytes
    kind: str  # "hold_statement" | "hold_reply"
    fired: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    forward: bool = False
    link: Link | None = None

    def release(self, *, forward: bool) -> None:
        self.forward = forward
        self.released.set()


class Link:
    """One client connection and its upstream connection, pumped by two threads."""

    def __init__(self, proxy: Proxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server: socket.socket | None = None
        self.closed = threading.Event()
        self.statements: dict[bytes, bytes] = {}  # prepared statement name -> SQL
        self.reply_rule: Rule | None = None  # hold the reply of the statement just sent
        self.started = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.server = socket.create_connection(self.proxy.upstream, timeout=10)
            self.server.settimeout(None)
        except OSError:
            self.reset()
            return
        threading.Thread(target=self._pump, args=(False,), daemon=True).start()
        self._pump(True)

    def reset(self) -> None:
        """Close both sides with a RST (SO_LINGER 0), as a broken network would."""
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()
        self.proxy._forget(self)

    # -- pumping ---------------------------------------------------------------------

    def _pump(self, upstream: bool) -> None:
        src = self.client if upstream else self.server
        assert src is not None
        buffer = b""
        startup = upstream  # the client's first message has no type byte
        # poll, not select: a 20-minute soak opens more than 1,024 descriptors, and
        # select() refuses those beyond; the pump died and left its link hung, which
        # the workers saw as a partition that never healed (seed 2478645721).
        poller = select.poll()
        try:
            poller.register(src, select.POLLIN)
            while not self.closed.is_set():
                if self.proxy.mode == "blackhole":
                    time.sleep(0.01)  # hold everything: a half-open partition
                    continue
                if self.proxy.mode == "reset":
                    self.reset()
                    return
                if not poller.poll(50):
                    continue
                chunk = src.recv(65536)
                if not chunk:
                    self.reset()
                    return
                buffer += chunk
                buffer, startup = self._forward(buffer, upstream, startup)
        except (OSError, ValueError):  # ValueError: the other pump closed the socket
            self.reset()
        except BaseException:
            self.reset()  # never a link left open with nobody pumping it
            raise

    def _forward(self, buffer: bytes, upstream: bool, startup: bool) -> tuple[bytes, bool]:
        """Forward every whole message in `buffer`; return the rest."""
        out = bytearray()
        while True:
            if startup:
                if len(buffer) < 8:
                    break
                (length,) = struct.unpack("!I", buffer[:4])
                if len(buffer) < length:
                    break
                message, buffer = buffer[:length], buffer[length:]
                (code,) = struct.unpack("!I", message[4:8])
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    self.client.sendall(b"N")  # no encryption: the stream stays readable
                    continue
                out += message
                startup = False
                continue
            if len(buffer) < 5:
                break
            (length,) = struct.unpack("!I", buffer[1:5])
            if len(buffer) < 1 + length:
                break
            message, buffer = buffer[: 1 + length], buffer[1 + length :]
            if upstream:
                rule = self._match(message)
                if rule is not None and rule.kind == "hold_statement":
                    self._send(out, upstream)
                    out = bytearray()
                    if not self._hold(rule):
                        return b"", startup
                elif rule is not None:
                    self.reply_rule = rule
            elif self.reply_rule is not None:
                # Hold the reply from its first message until ReadyForQuery: by then the
                # statement has committed. Forward it only if the rule is released so.
                rule, self.reply_rule = self.reply_rule, None
                reply = message + buffer
                while (end := _after_ready(reply)) is None:
                    more = self._recv_more()
                    if more is None:
                        return b"", startup
                    reply += more
                self._send(out, upstream)
                out = bytearray()
                if not self._hold(rule):
                    return b"", startup
                out += reply[:end]
                buffer = reply[end:]
                continue
            out += message
        self._send(out, upstream)
        return buffer, startup

    def _recv_more(self) -> bytes | None:
        assert self.server is not None
        try:
            chunk = self.server.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.reset()
            return None
        return chunk

    def _send(self, data: bytes | bytearray, upstream: bool) -> None:
        if not data:
            return
        while self.proxy.mode == "blackhole" and not self.closed.is_set():
            time.sleep(0.01)  # bytes read before the partition began wait too
        if self.proxy.mode == "delay" and self.proxy.delay > 0:
            time.sleep(self.proxy.delay)
        dst = self.server if upstream else self.client
        assert dst is not None
        dst.sendall(bytes(data))

    def _hold(self, rule: Rule) -> bool:
        """Wait for the rule's release; False if the connection was reset instead."""
        rule.link = self
        rule.fired.set()
        while not rule.released.wait(0.05):
            if self.closed.is_set():
                return False
        if not rule.forward:
            self.reset()
            return False
        return not self.closed.is_set()

    # -- reading statements ------------------------------------------------------------

    def _match(self, message: bytes) -> Rule | None:
        kind, body = message[:1], message[5:]
        sql: bytes | None = None
        if kind == b"Q":
            sql = body.split(b"\0", 1)[0]
        elif kind == b"P":
            name, rest = body.split(b"\0", 1)
            sql = rest.split(b"\0", 1)[0]
            if name:  # prepared for later: its Binds are the executions to match
                self.statements[name] = sql
                return None
        elif kind == b"B":
            _portal, rest = body.split(b"\0", 1)
            name = rest.split(b"\0", 1)[0]
            if name:  # an unnamed statement was matched by its Parse
                sql = self.statements.get(name)
        if sql is None:
            return None
        return self.proxy._take_rule(sql)


def _after_ready(data: bytes) -> int | None:
    """The offset just after the first whole ReadyForQuery message in `data`, if any."""
    at = 0
    while len(data) - at >= 5:
        (length,) = struct.unpack("!I", data[at + 1 : at + 5])
        if len(data) - at < 1 + length:
            return None
        at += 1 + length
        if data[at - 1 - length : at - length] == b"Z":
            return at
    return None


class Proxy:
    """Listens on 127.0.0.1 (an ephemeral port) and forwards to `upstream`."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.delay = 0.0
        self._links: set[Link] = set()
        self.accepted = 0  # connections accepted, ever
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, name="chaos-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            link = Link(self, client)
            with self._lock:
                self._links.add(link)
                self.accepted += 1
            if self.mode == "reset":
                link.reset()
                continue
            threading.Thread(target=link.run, daemon=True).start()

    def _forget(self, link: Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _take_rule(self, sql: bytes) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.pattern in sql:
                    self._rules.remove(rule)
                    return rule
        return None

    def upstream_ports(self) -> set[int]:
        """The local ports of the connections to the server: `client_port` in the
        server's pg_stat_activity."""
        ports = set()
        with self._lock:
            links = list(self._links)
        for link in links:
            with contextlib.suppress(OSError, AttributeError):
                ports.add(link.server.getsockname()[1])  # type: ignore[union-attr]
        return ports

    # -- control ---------------------------------------------------------------------

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        assert mode in ("pass", "delay", "blackhole", "reset"), mode
        self.delay = delay
        self.mode = mode
        if mode == "reset":
            self.reset_all()

    def reset_all(self) -> int:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.reset()
        return len(links)

    def add_rule(self, pattern: str, kind: str) -> Rule:
        assert kind in ("hold_statement", "hold_reply"), kind
        rule = Rule(pattern.encode(), kind)
        with self._lock:
            self._rules.append(rule)
        return rule

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._links)

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset_all()
