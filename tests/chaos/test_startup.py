"""A worker that starts while the database is away (docs/deploying.md): it waits for
the database with backoff and a log line, like any later outage, and starts once the
database is back, also when the database goes away in the middle of its start. A
configuration error still fails at once, with one line and a non-zero exit."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from ..helpers import wait_for
from ..procs import cli_env, run_cli
from .harness import APP, Chaos, now
from .server import SUPERUSER, dsn_for

MIGRATION_CHECK_SQL = "to_regclass('queuetopia_versions')"  # the first thing a worker asks


def test_a_worker_started_while_the_database_is_down_waits_and_then_runs_jobs(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=3.0, poll=1.0)
    chaos.server.pg_ctl("-m", "fast", "stop")
    began = now()
    try:
        worker = chaos.worker(concurrency=1, ready=False)
        wait_for(
            lambda: worker.popen.poll() is not None or "waiting for it" in worker.log(),
            timeout=30,
            what="the worker to say it waits for the database",
        )
        time.sleep(2.0)  # a few more tries, with backoff
        assert worker.popen.poll() is None, f"the worker exited:\n{worker.log()}"
    finally:
        chaos.server.start()
    chaos.fault("outage", None, began, now())
    worker.wait_ready(timeout=60)
    waits = [line for line in chaos.log_lines(worker) if "waiting for it" in line["message"]]
    assert waits and all(line["level"] == "warning" for line in waits)
    job = chaos.enqueue("q", 0)
    chaos.wait_done(1, timeout=30)
    assert chaos.job(job)["attempts"] == 1
    chaos.assert_drained()
    chaos.assert_clean(chaos.check("18 worker started while the database was down"))
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()


def test_a_connection_lost_during_the_start_does_not_stop_the_worker(
    make_chaos: Callable[..., Chaos],
) -> None:
    """The worker's first statement is held at the proxy, then its connection is reset,
    as a database restart in the middle of the start does."""
    chaos = make_chaos(lock_ttl=3.0, poll=1.0)
    proxy = chaos.proxy()
    rule = proxy.add_rule(MIGRATION_CHECK_SQL, "hold_statement")
    worker = chaos.worker(concurrency=1, dsn=chaos.proxied_dsn(proxy), ready=False)
    assert rule.fired.wait(60), "the worker never asked for the schema version"
    rule.release(forward=False)
    chaos.fault("reset", worker.pid, now())
    worker.wait_ready(timeout=60)
    chaos.enqueue("q", 0)
    chaos.wait_done(1, timeout=30)
    chaos.assert_drained()
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()


@pytest.mark.parametrize("mistake", ["bad syntax", "unknown database", "wrong password"])
def test_a_configuration_error_still_fails_at_once(
    make_chaos: Callable[..., Chaos], mistake: str
) -> None:
    chaos = make_chaos()
    server = chaos.server
    dsn = {
        "bad syntax": f"host=127.0.0.1 port={server.port} nonsense=1 password={server.password}",
        "unknown database": dsn_for(server.port, SUPERUSER, server.password, "nosuchdb"),
        "wrong password": dsn_for(server.port, SUPERUSER, "not-" + server.password),
    }[mistake]
    began = time.monotonic()
    result = run_cli("worker", APP, "--dsn", dsn, env=cli_env(dsn), timeout=60)
    assert result.returncode != 0
    assert time.monotonic() - began < 30
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert server.password not in result.stderr + result.stdout
