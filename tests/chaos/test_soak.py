"""The randomized mixed-fault soak (scenario 13, tests/chaos/soak.py): every kind of
fault, interleaved, on several workers and many queues, then the invariants. CI runs it
for 60 s; `--soak` (or QUEUETOPIA_CHAOS_SOAK=1) for 10 minutes and at least 1,000
faults. The seed is printed with the figures; QUEUETOPIA_SOAK_SEED replays a run, and
QUEUETOPIA_SOAK_READ_ONLY=0 leaves the read-only flips out; QUEUETOPIA_SOAK_SECONDS and
QUEUETOPIA_SOAK_QUEUES change its length and its number of queues. QUEUETOPIA_CHAOS_PREFETCH=N
gives every chaos worker `--prefetch N` (docs/deploying.md, "Claiming ahead").

With `--soak`, the hypothesis model of the rules (tests/test_model.py) runs too, with
a random seed, printed (the normal run derandomizes it)."""

from __future__ import annotations

import os
import random

import psycopg
import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from ..test_model import QueueMachine
from .conftest import Sizes
from .failover import Cluster, FailoverPair, chaos_on, copy_log
from .harness import RESULTS, Chaos, Report, _write_results
from .server import ChaosServer
from .soak import Soak

LOCK_TTL = 2.0
COMMIT_TIMEOUT = 5.0


def _seed(name: str) -> int:
    return int(os.environ.get(name) or random.SystemRandom().randrange(1 << 32))


def test_randomized_mixed_fault_soak(
    sync_pair: FailoverPair, log_server: ChaosServer, sizes: Sizes
) -> None:
    chaos = _soak_chaos(sync_pair, log_server)
    try:
        _soak(chaos, log_server, sizes)
    finally:
        chaos.close()


def _soak_chaos(pair: FailoverPair, log_server: ChaosServer) -> Chaos:
    """The harness on the primary whichever it is (`primary`: even in a read-only
    spell, when `read-write` would find no server)."""
    return chaos_on(
        pair, log_server.dsn, "soak", lock_ttl=LOCK_TTL, commit_timeout=COMMIT_TIMEOUT,
        attrs="primary",
    )  # fmt: skip


def _soak(chaos: Chaos, log_server: ChaosServer, sizes: Sizes) -> None:
    run_seed = _seed("QUEUETOPIA_SOAK_SEED")
    print(f"soak seed {run_seed} (QUEUETOPIA_SOAK_SEED={run_seed} replays its faults)")
    read_only = os.environ.get("QUEUETOPIA_SOAK_READ_ONLY", "1") != "0"
    soak = Soak(
        chaos,
        seed=run_seed,
        workers=int(sizes.pick(4, 6)),
        queues=int(os.environ.get("QUEUETOPIA_SOAK_QUEUES") or sizes.pick(12, 30)),
        seconds=float(os.environ.get("QUEUETOPIA_SOAK_SECONDS") or sizes.pick(60, 600)),
        mean_gap=float(sizes.pick(0.5, 0.2)),
        read_only=read_only,
        big=int(sizes.pick(20, 100)),
        snapshot_s=float(sizes.pick(10, 60)),
    )
    soak.run()
    # The figures first, whatever went wrong: a worker that exited and was not started
    # again is a finding of the run, and the others drain the queues.
    exited = [s.proc for s in soak.slots if s.proc.popen.poll() is not None]
    assert len(exited) < len(soak.slots), "every worker exited"
    try:
        took = chaos.wait_done(chaos.count(), timeout=300)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_why_not_done(chaos)}") from None
    chaos.jobs = chaos.count()
    chaos.assert_drained()
    copy_log(chaos.scope, log_server.dsn, chaos.server.primary_dsn)
    failed = chaos.count("failed")
    report = chaos.check(
        "13 randomized mixed-fault soak",
        seed=run_seed,
        read_only_flips=read_only,
        drain_after_faults_s=round(took, 1),
        failed_jobs=failed,
        workers_left_exited=len(exited),
        **soak.figures(),
    )
    print(f"soak seed {run_seed}: {report}")
    chaos.assert_clean(report)
    assert soak.errors == [], soak.errors
    assert exited == [], "workers exited and were not started again:\n" + "\n".join(
        f"pid {p.pid} status {p.popen.returncode}: {p.log()[-3000:]}" for p in exited
    )
    assert failed == 0
    assert soak.faults_of("failover") >= 1, soak.figures()
    if sizes.soak:
        assert len(soak.faults) >= soak.seconds * 5 / 3, soak.figures()  # 1,000 in 10 min
    chaos.assert_no_password_in_logs()


def _why_not_done(chaos: Chaos) -> str:
    """The servers of the pair and the jobs left: what a run that did not drain needs
    to be looked into (QUEUETOPIA_CHAOS_KEEP=DIR keeps the servers' logs too)."""
    cluster = chaos.server
    pair = cluster.pair.describe() if isinstance(cluster, Cluster) else ""
    jobs = chaos.db.rows(LEFT, (chaos.scope,), timeout=10)
    return pair + "\njobs not done:\n" + "\n".join(str(row) for row in jobs)


LEFT = """
SELECT j.queue, j.id, j.state, j.attempts, j.next_attempt_at, left(j.error, 200),
       l.owner, l.locked_until, l.released
  FROM queuetopia_jobs j
  LEFT JOIN queuetopia_leases l ON l.scope = j.scope AND l.queue = j.queue
 WHERE j.scope = %s AND j.state NOT IN ('done', 'cancelled')
 ORDER BY j.queue, j.id LIMIT 60
"""


def test_the_model_with_a_random_seed(dsn: str, sizes: Sizes) -> None:
    if not sizes.soak:
        pytest.skip("runs with --soak (tests/test_model.py runs the model derandomized)")
    model_seed = _seed("QUEUETOPIA_MODEL_SEED")
    report = Report(scenario="13 model of the rules, random seed", extra={"seed": model_seed})
    RESULTS.append(report)
    _write_results()
    print(f"model seed {model_seed} (QUEUETOPIA_MODEL_SEED={model_seed} replays it)")

    class Seeded(QueueMachine):
        pass

    seed(model_seed)(Seeded)
    with psycopg.connect(dsn, autocommit=True) as conn:
        Seeded.dsn, Seeded.conn = dsn, conn
        run_state_machine_as_test(
            Seeded,
            settings=settings(
                max_examples=300,
                stateful_step_count=40,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
