"""Fixtures of the chaos suite: a PostgreSQL server of its own (restartable, TCP with
passwords), a fresh scope per test with its worker processes, and the `--soak` option."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from queuetopia import Queuetopia

from .failover import FailoverPair
from .harness import LOG_TABLES, RESULTS, Chaos
from .server import ChaosServer

SOAK_ENV = "QUEUETOPIA_CHAOS_SOAK"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help=f"chaos suite: run the big sizes (or set {SOAK_ENV}=1)",
    )


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs: CI sizes by default, `--soak` for the big ones."""

    soak: bool

    def pick(self, ci: int | float, soak: int | float) -> int | float:
        return soak if self.soak else ci


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Chaos scenarios outlive the suite's default per-test timeout on a busy machine,
    and by far with --soak: a soak of QUEUETOPIA_SOAK_SECONDS gets that and 15 minutes
    more for its start, its drain and its checks."""
    soak = bool(config.getoption("--soak", default=False)) or bool(os.environ.get(SOAK_ENV))
    longest = max(1800.0, float(os.environ.get("QUEUETOPIA_SOAK_SECONDS") or 0) + 900)
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(longest if soak else 300))


@pytest.fixture(scope="session")
def sizes(request: pytest.FixtureRequest) -> Sizes:
    soak = bool(request.config.getoption("--soak", default=False)) or bool(os.environ.get(SOAK_ENV))
    return Sizes(soak)


@pytest.fixture(scope="session")
def chaos_server() -> Iterator[ChaosServer]:
    pytest.importorskip("pgserver", reason="the chaos suite runs its own PostgreSQL: [embedded]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = ChaosServer()
        try:
            server.init()
            server.start()
            Queuetopia(dsn=server.dsn).migrate()
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(LOG_TABLES)
            yield server
        finally:
            server.cleanup()


@pytest.fixture
def make_chaos(chaos_server: ChaosServer) -> Iterator[Callable[..., Chaos]]:
    made: list[Chaos] = []

    def make(*, lock_ttl: float = 3.0, poll: float = 1.0) -> Chaos:
        chaos = Chaos(chaos_server, f"chaos-{uuid.uuid4().hex[:10]}", lock_ttl=lock_ttl, poll=poll)
        made.append(chaos)
        return chaos

    yield make
    for chaos in made:
        chaos.close()
    chaos_server.ensure_running()  # a test that stopped the server must not break the next


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("chaos figures")
    for r in RESULTS:
        terminalreporter.write_line(
            f"{r.scenario}: jobs={r.jobs} executions={r.executions} faults={r.faults} "
            f"killed={r.killed_executions} reexecuted={r.reexecuted_after_fault} "
            f"cut_off_overlaps={r.cut_off_overlaps} (max {r.cut_off_overlap_max_s}s,"
            f" {r.cut_off_after_resume_max_s}s after resume) "
            f"recovery median={r.median_recovery_s}s max={r.max_recovery_s}s "
            f"duration={r.duration_s}s "
            f"violations={r.violations() or 'none'} {r.extra or ''}"
        )


@pytest.fixture
def log_server(chaos_server: ChaosServer) -> ChaosServer:
    return chaos_server


def _pair(synchronous: bool) -> Iterator[FailoverPair]:
    """A primary and its standby (tests/chaos/failover.py), migrated, with the log
    tables (the checks read them there; the log is written to the suite's server)."""
    pair = FailoverPair(synchronous=synchronous)
    try:
        pair.start()
        Queuetopia(dsn=pair.dsn()).migrate()
        with psycopg.connect(pair.dsn(), autocommit=True) as conn:
            conn.execute(LOG_TABLES)
        yield pair
    finally:
        pair.cleanup()


@pytest.fixture
def sync_pair(chaos_server: ChaosServer) -> Iterator[FailoverPair]:
    yield from _pair(True)


@pytest.fixture
def async_pair(chaos_server: ChaosServer) -> Iterator[FailoverPair]:
    yield from _pair(False)
