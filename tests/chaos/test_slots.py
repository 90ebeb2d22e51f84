"""Scenario 20: another application takes every connection slot of the server (its
max_connections), and every slot freed while it holds them. Workers that run wait with
a bounded, jittered backoff and a line per part of the worker (no storm of reconnects,
no storm of lines), lose nothing and run nothing twice; a worker that starts meanwhile
waits and starts once slots are free; producers get a DatabaseUnavailable that names
the cause (docs/deploying.md, "Out of connection slots")."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import pytest

from queuetopia import DatabaseUnavailable, Queuetopia

from ..helpers import wait_for
from .harness import Chaos, now
from .slots import SlotHog, wait_refused

LOCK_TTL = 10.0
# Inside the bound of docs/guarantees.md ("Outages"): 0.42 x lock_ttl, less a margin
# for taking and giving back some 300 slots.
TAKEN_FOR = 3.0
# Each part of a worker that connects (the step, the heartbeat, the listener) tries at
# most every lock_ttl/40 or so while its leases are trusted: about 12 tries a second
# for three parts at lock_ttl 10 s; a storm is thousands.
MOST_TRIES_PER_SECOND = 15.0
NAMED = "no connection slot free"


def _warnings(chaos: Chaos, proc: object, since: datetime) -> list[str]:
    return [
        line["message"]
        for line in chaos.log_lines(proc)  # type: ignore[arg-type]
        if line["level"] == "warning"
        and line["logger"].startswith("queuetopia")
        and datetime.fromisoformat(line["time"]) >= since
    ]


def test_workers_ride_out_a_server_out_of_slots(make_chaos: Callable[..., Chaos]) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=1.0)
    proxies = [chaos.proxy(), chaos.proxy()]
    workers = [chaos.worker(concurrency=3, dsn=chaos.proxied_dsn(p)) for p in proxies]
    total = chaos.enqueue_grid([f"q{i}" for i in range(6)], 40, lambda q, n: {"sleep": 0.05})
    wait_for(lambda: len(chaos.executions()) > 20, timeout=30, what="jobs to run")
    began = now()
    with SlotHog(chaos.server.dsn) as hog:
        tried_before = sum(p.accepted for p in proxies)
        ports = sorted(set().union(*(p.upstream_ports() for p in proxies)))
        chaos.db.rows(  # the workers' sessions go; the hog takes their slots
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = ANY(%s)",
            (ports,),
        )
        wait_refused(chaos.server.dsn)
        time.sleep(TAKEN_FOR)
        tries = sum(p.accepted for p in proxies) - tried_before
        taken = hog.taken
    ended = now()
    chaos.fault("no-slots", None, began, ended)
    chaos.wait_done(total, timeout=120)
    assert all(w.popen.poll() is None for w in workers)
    assert tries <= MOST_TRIES_PER_SECOND * TAKEN_FOR * len(workers), tries
    for worker in workers:
        warned = _warnings(chaos, worker, began)
        assert any(NAMED in line for line in warned), warned
        # The step, the heartbeat and the listener: at most once for the terminated
        # connection and once for the slots (an idle part may not have tried).
        assert len(warned) <= 6, warned
    # Inside the bound: no attempt charged, no job run twice.
    assert {chaos.job(e["job_id"])["attempts"] for e in chaos.executions()} == {1}
    chaos.assert_drained()
    report = chaos.check(
        "20a server out of connection slots, workers running",
        slots_taken=taken,
        seconds=TAKEN_FOR,
        connection_tries=tries,
    )
    chaos.assert_clean(report)
    assert chaos.stop_all() == [0, 0]
    chaos.assert_no_password_in_logs()


def test_a_worker_started_while_the_server_is_out_of_slots_waits(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=3.0, poll=1.0)
    began = now()
    with SlotHog(chaos.server.dsn):
        wait_refused(chaos.server.dsn)
        worker = chaos.worker(concurrency=1, ready=False)
        wait_for(
            lambda: worker.popen.poll() is not None or NAMED in worker.log(),
            timeout=30,
            what="the worker to say why it waits",
        )
        time.sleep(2.0)  # a few more tries, with backoff
        assert worker.popen.poll() is None, f"the worker exited:\n{worker.log()}"
    chaos.fault("no-slots", None, began, now())
    worker.wait_ready(timeout=60)
    waits = [line for line in chaos.log_lines(worker) if "waiting for it" in line["message"]]
    assert waits and all(NAMED in line["message"] for line in waits), waits
    assert len(waits) <= 5, waits  # 0.5 s, then doubling, jittered
    chaos.enqueue("q", 0)
    chaos.wait_done(1, timeout=30)
    chaos.assert_drained()
    chaos.assert_clean(chaos.check("20b worker started while the server was out of slots"))
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()


def test_producers_are_told_the_server_is_out_of_slots(make_chaos: Callable[..., Chaos]) -> None:
    """A producer whose pooled connection is gone waits for the pool, then says why;
    a new one says it at once. Nothing is written."""
    chaos = make_chaos()
    with Queuetopia(dsn=chaos.server.dsn, scope=chaos.scope, pool_size=1) as pooled:
        pooled.create_job("q", "work", {"n": 0})
        assert chaos.count() == 1  # the test's own session, before the slots go
        with SlotHog(chaos.server.dsn):
            for backend in chaos.db.rows(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'queuetopia'"
            ):
                chaos.db.rows("SELECT pg_terminate_backend(%s)", (backend["pid"],))
            wait_refused(chaos.server.dsn)
            with pytest.raises(DatabaseUnavailable, match=NAMED) as waited:
                pooled.create_job("q", "work", {"n": 1})
            assert "no connection from the pool in 10 s" in str(waited.value)
            assert chaos.server.password not in str(waited.value)
            began = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match=NAMED):
                Queuetopia(dsn=chaos.server.dsn, scope=chaos.scope).create_job(
                    "q", "work", {"n": 2}
                )
            assert time.monotonic() - began < 5.0
        assert chaos.count() == 1
        pooled.create_job("q", "work", {"n": 3})
    assert chaos.count() == 2
