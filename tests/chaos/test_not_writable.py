"""The database is up but accepts no writes for a few seconds (docs/reliability.md):
`default_transaction_read_only`, as a standby after a failover behaves. Like a lost
connection, that is an outage of the bookkeeping, retried, never a job's failure: with
max_attempts=2, every job ends done once, on its first attempt, and no attempt is
charged as "worker lost". Producers get a clear queuetopia error meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable

from queuetopia import DatabaseUnavailable, QueuetopiaError

from ..helpers import wait_for
from .harness import Chaos, now

# Longer than the read-only spell, so no lease runs out while the bookkeeping waits:
# what is tested is that a write refused for read-only is retried, not fencing.
LOCK_TTL = 10.0
READ_ONLY_FOR = 3.0


def set_read_only(chaos: Chaos, on: bool) -> None:
    setting = (
        "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    )
    chaos.db.rows("ALTER SYSTEM " + setting)
    chaos.db.rows("SELECT pg_reload_conf()")
    # Each session rereads the configuration on its own, soon after the reload.
    wanted = "on" if on else "off"
    wait_for(
        lambda: chaos.db.value("SHOW default_transaction_read_only") == wanted,
        timeout=10,
        what=f"default_transaction_read_only to be {wanted}",
    )


def test_a_read_only_spell_is_an_outage_not_a_failed_attempt(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=1.0)
    procs = [chaos.worker(concurrency=3, ready=False) for _ in range(2)]
    for proc in procs:
        proc.wait_ready(timeout=60)
    queues = [f"q{i}" for i in range(6)]
    with chaos.producer.connection() as conn, conn.transaction():
        for n in range(25):
            for queue in queues:
                chaos.producer.create_job(
                    queue, "work", {"n": n, "sleep": 0.1}, max_attempts=2, connection=conn
                )
    total = len(queues) * 25
    chaos.jobs += total
    wait_for(lambda: chaos.count("done") >= 10, timeout=60, what="the first jobs to be done")
    began = now()
    set_read_only(chaos, True)
    try:
        time.sleep(0.2)  # and the producer's pooled session too
        try:
            chaos.producer.create_job("q0", "work", {"n": 99})
            refused: QueuetopiaError | None = None
        except QueuetopiaError as exc:
            refused = exc
        time.sleep(READ_ONLY_FOR - 0.2)
        done_meanwhile = chaos.count("done")
    finally:
        set_read_only(chaos, False)
    chaos.fault("read-only", None, began, now())
    took = chaos.wait_done(total, timeout=120)
    assert done_meanwhile < total, "the spell came too late to hit running jobs"
    # The producer's error says what is wrong, and is one a caller may retry.
    assert isinstance(refused, DatabaseUnavailable), repr(refused)
    assert "read-only" in str(refused)
    charged = chaos.db.rows(
        "SELECT id, attempts, state, left(error, 200) AS error FROM queuetopia_jobs"
        " WHERE scope = %s AND (attempts <> 1 OR error IS NOT NULL)",
        (chaos.scope,),
    )
    assert charged == [], charged
    assert all(p.popen.poll() is None for p in procs), "a worker exited"
    chaos.assert_drained()
    report = chaos.check(
        "16 database read-only for 3 s",
        read_only_s=READ_ONLY_FOR,
        drain_after_read_only_s=round(took, 1),
    )
    chaos.assert_clean(report)
    assert report.reexecuted_after_fault == 0
    assert chaos.stop_all() == [0, 0]
    chaos.assert_no_password_in_logs()
