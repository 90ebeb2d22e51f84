"""The randomized mixed-fault soak (scenario 13, tests/chaos/soak.py): every kind of
fault, interleaved, on several workers and many queues, then the invariants. CI runs it
for 60 s; `--soak` (or QUEUETOPIA_CHAOS_SOAK=1) for 10 minutes and at least 1,000
faults. The seed is printed with the figures; QUEUETOPIA_SOAK_SEED replays a run, and
QUEUETOPIA_SOAK_READ_ONLY=0 leaves the read-only flips out.

With `--soak`, the hypothesis model of the rules (tests/test_model.py) runs too, with
a random seed, printed (the normal run derandomizes it)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import psycopg
import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from ..test_model import QueueMachine
from .conftest import Sizes
from .harness import RESULTS, Chaos, Report, _write_results
from .soak import Soak

LOCK_TTL = 2.0


def _seed(name: str) -> int:
    return int(os.environ.get(name) or random.SystemRandom().randrange(1 << 32))


def test_randomized_mixed_fault_soak(make_chaos: Callable[..., Chaos], sizes: Sizes) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=1.0)
    run_seed = _seed("QUEUETOPIA_SOAK_SEED")
    read_only = os.environ.get("QUEUETOPIA_SOAK_READ_ONLY", "1") != "0"
    soak = Soak(
        chaos,
        seed=run_seed,
        workers=int(sizes.pick(4, 6)),
        queues=int(sizes.pick(12, 30)),
        seconds=float(sizes.pick(60, 600)),
        mean_gap=float(sizes.pick(0.5, 0.25)),
        read_only=read_only,
    )
    soak.run()
    # The figures first, whatever went wrong: a worker that exited on its own is a
    # finding of the run, and the others drain the queues.
    exited = [s.proc.pid for s in soak.slots if s.proc.popen.poll() is not None]
    assert len(exited) < len(soak.slots), "every worker exited"
    took = chaos.wait_done(chaos.count(), timeout=300)
    chaos.jobs = chaos.count()
    chaos.assert_drained()
    failed = chaos.count("failed")
    report = chaos.check(
        "13 randomized mixed-fault soak",
        seed=run_seed,
        read_only_flips=read_only,
        drain_after_faults_s=round(took, 1),
        failed_jobs=failed,
        workers_exited_on_their_own=len(exited),
        **soak.figures(),
    )
    print(f"soak seed {run_seed}: {report}")
    assert soak.errors == [], soak.errors
    assert exited == [], f"workers exited on their own: {exited}"
    if sizes.soak:
        assert len(soak.faults) >= 1000, soak.figures()
    chaos.assert_clean(report)
    assert failed == 0
    chaos.assert_no_password_in_logs()


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
