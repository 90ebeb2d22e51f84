"""The invariant checks of the harness catch what they are meant to catch: each
violation is written by hand into the logs of a scope of its own, then measured."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .harness import Chaos

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(chaos: Chaos, job_id: int, n: int, attempt: int, pid: int, start: float, end: float | None,
        outcome: str | None = "ok", prev_error: str | None = None) -> None:  # fmt: skip
    chaos.db.rows(
        "INSERT INTO chaos_exec (exec_id, scope, job_id, queue, n, attempt, pid, prev_error,"
        " started_at, ended_at, outcome) VALUES (%s, %s, %s, 'q', %s, %s, %s, %s, %s, %s, %s)",
        (uuid.uuid4(), chaos.scope, job_id, n, attempt, pid, prev_error, at(start),
         None if end is None else at(end), outcome),
    )  # fmt: skip


def done(chaos: Chaos, job_id: int, attempts: int, when: float) -> None:
    chaos.db.rows(
        "UPDATE queuetopia_jobs SET state = 'done', attempts = %s, done_at = %s WHERE id = %s",
        (attempts, at(when), job_id),
    )


def completed_twice(chaos: Chaos, a: int, b: int) -> None:
    """Job `a` runs to its end in process 100 (0-1 s), then again, as attempt 2, in
    process 200 (2-3 s), which records it; then job `b`."""
    run(chaos, a, 0, 1, 100, 0, 1)
    run(chaos, a, 0, 2, 200, 2, 3, prev_error="worker lost: x")
    run(chaos, b, 1, 1, 200, 3, 4)
    done(chaos, a, 2, 3.1)
    done(chaos, b, 1, 4.1)


@pytest.fixture
def two_jobs(make_chaos: Callable[..., Chaos]) -> tuple[Chaos, int, int]:
    chaos = make_chaos()
    return chaos, chaos.enqueue("q", 0), chaos.enqueue("q", 1)


def measure(chaos: Chaos) -> dict[str, Any]:
    report = chaos.check("(self-test)")
    from .harness import RESULTS

    RESULTS.remove(report)
    return {**report.violations(), "reexecuted": report.reexecuted_after_fault,
            "cut_off": report.cut_off_overlaps, "killed": report.killed_executions}  # fmt: skip


def test_a_clean_log_has_no_violation(two_jobs: tuple[Chaos, int, int]) -> None:
    chaos, a, b = two_jobs
    run(chaos, a, 0, 1, 100, 0, 1)
    run(chaos, b, 1, 1, 200, 1, 2)
    done(chaos, a, 1, 1.1)
    done(chaos, b, 1, 2.1)
    assert measure(chaos) == {"reexecuted": 0, "cut_off": 0, "killed": 0}


def test_overlaps_order_and_lost_jobs_are_caught(two_jobs: tuple[Chaos, int, int]) -> None:
    chaos, a, b = two_jobs
    run(chaos, b, 1, 1, 200, 0, 2)  # job 1 runs first, and job 0 starts before it ends
    run(chaos, a, 0, 1, 100, 1, 3)
    done(chaos, b, 1, 2.1)
    found = measure(chaos)
    assert found["overlaps"] == 1 and found["order_violations"] >= 1 and found["lost"] == 1


def test_an_execution_resumed_after_a_sigstop_may_log_its_start_late(
    two_jobs: tuple[Chaos, int, int],
) -> None:
    """Frozen as it began, job 0's execution logs its start after SIGCONT, after its
    successor ran job 1: explained only by a stop of that process ending just before."""
    chaos, a, b = two_jobs
    run(chaos, b, 1, 1, 200, 1, 2)
    run(chaos, a, 0, 1, 100, 3.5, 3.6, "interrupted")
    done(chaos, b, 1, 2.1)
    assert measure(chaos)["order_violations"] == 1
    chaos.fault("stop", 100, at(0), at(3))
    found = measure(chaos)
    assert "order_violations" not in found


def test_an_overlap_by_a_stopped_worker_is_explained(two_jobs: tuple[Chaos, int, int]) -> None:
    chaos, a, b = two_jobs
    run(chaos, a, 0, 1, 100, 0, 5, "interrupted")
    run(chaos, a, 0, 2, 200, 3, 4, prev_error="worker lost: x")
    run(chaos, b, 1, 1, 200, 4, 4.5)
    done(chaos, a, 2, 4.1)
    done(chaos, b, 1, 4.6)
    assert measure(chaos)["overlaps"] == 2  # with job 0's retry and with job 1
    chaos.fault("stop", 100, at(1), at(4.5))
    assert measure(chaos) == {"reexecuted": 0, "cut_off": 2, "killed": 0}


def test_a_stopped_execution_whose_end_was_never_logged_is_measured(
    two_jobs: tuple[Chaos, int, int],
) -> None:
    """Its end is left to the flusher, which may never write it: the overlap is
    measured (not an error of the check: seed 3190057975), and counted apart."""
    chaos, a, b = two_jobs
    run(chaos, a, 0, 1, 100, 0, None, None)
    run(chaos, a, 0, 2, 200, 3, 4, prev_error="worker lost: x")
    run(chaos, b, 1, 1, 200, 4, 4.5)
    done(chaos, a, 2, 4.1)
    done(chaos, b, 1, 4.6)
    assert measure(chaos)["overlaps"] == 2
    chaos.fault("stop", 100, at(1), at(4.5))
    report = chaos.check("(self-test)")
    from .harness import RESULTS

    RESULTS.remove(report)
    assert (report.overlaps, report.cut_off_overlaps) == (0, 2)
    assert report.extra["cut_off_never_ended"] == 2
    assert report.cut_off_overlap_max_s == 1.0  # job 0's retry, 3 s to 4 s


def test_a_double_completion_is_caught_unless_a_fault_explains_it(
    two_jobs: tuple[Chaos, int, int],
) -> None:
    chaos, a, b = two_jobs
    completed_twice(chaos, a, b)
    assert measure(chaos)["duplicated"] == 1
    chaos.fault("kill", 100, at(1.05))
    assert measure(chaos) == {"reexecuted": 1, "cut_off": 0, "killed": 0}


def test_a_killed_attempt_must_be_counted_as_worker_lost(two_jobs: tuple[Chaos, int, int]) -> None:
    chaos, a, b = two_jobs
    run(chaos, a, 0, 1, 100, 0, None, None)
    chaos.fault("kill", 100, at(0.5))
    run(chaos, a, 0, 1, 200, 3, 4, prev_error="something else")  # same attempt, no error
    run(chaos, b, 1, 1, 200, 4, 5)
    done(chaos, a, 1, 4.1)
    done(chaos, b, 1, 5.1)
    found = measure(chaos)
    assert found["killed_not_counted"] == 1 and found["same_attempt_twice"] == 1


def test_a_killed_attempt_counted_in_the_attempt_log_is_counted(
    two_jobs: tuple[Chaos, int, int],
) -> None:
    """The next attempts never reached the action (interrupted as they started), so the
    next execution saw their error, not "worker lost": the attempt log says it."""
    chaos, a, b = two_jobs
    run(chaos, a, 0, 1, 100, 0, None, None)
    chaos.fault("kill", 100, at(0.5))
    run(chaos, a, 0, 3, 200, 3, 4, prev_error="interrupted: lease lost")
    run(chaos, b, 1, 1, 200, 4, 5)
    done(chaos, a, 3, 4.1)
    done(chaos, b, 1, 5.1)
    assert measure(chaos)["killed_not_counted"] == 1  # no attempt log: not counted
    entry = {"attempt": 1, "outcome": "retry", "error": "worker lost: vm:100 stopped"}
    chaos.db.rows(
        "UPDATE queuetopia_jobs SET attempt_log = jsonb_build_array(%s::jsonb) WHERE id = %s",
        (json.dumps(entry), a),
    )
    assert "killed_not_counted" not in measure(chaos)


def test_an_execution_overlapping_a_killed_one_is_caught(two_jobs: tuple[Chaos, int, int]) -> None:
    chaos, a, b = two_jobs
    run(chaos, a, 0, 1, 100, 0, None, None)
    run(chaos, a, 0, 2, 200, 1, 2, prev_error="worker lost: x")  # before the kill
    chaos.fault("kill", 100, at(1.5))
    run(chaos, b, 1, 1, 200, 2, 3)
    done(chaos, a, 2, 2.1)
    done(chaos, b, 1, 3.1)
    assert measure(chaos)["overlaps"] == 1


def test_a_completion_without_an_execution_is_caught(two_jobs: tuple[Chaos, int, int]) -> None:
    chaos, a, b = two_jobs
    run(chaos, b, 1, 1, 200, 1, 2)
    done(chaos, a, 1, 0.5)
    done(chaos, b, 1, 2.1)
    assert measure(chaos)["phantom_completions"] == 1


def test_a_fault_after_the_rerun_does_not_explain_a_double_completion(
    two_jobs: tuple[Chaos, int, int],
) -> None:
    """Only a fault that hit the process while its execution could still have been
    recorded (after it started, before the job ran again) explains a rerun; a fault
    of the same process later on explains nothing."""
    chaos, a, b = two_jobs
    completed_twice(chaos, a, b)
    chaos.fault("kill", 100, at(5))  # after the rerun: no excuse
    chaos.fault("stop", 100, at(-2), at(-1))  # before the execution: none either
    assert measure(chaos)["duplicated"] == 1
    chaos.fault("stop", 100, at(1.5), at(6))  # while its outcome was on its way
    assert measure(chaos) == {"reexecuted": 1, "cut_off": 0, "killed": 0}


def test_a_database_wide_fault_during_the_execution_explains_a_double_completion(
    two_jobs: tuple[Chaos, int, int],
) -> None:
    """A read-only spell or a restart hits every process: no lease can be renewed, so
    an outcome may be discarded and its job run again. Before the execution started,
    such a fault explains nothing."""
    chaos, a, b = two_jobs
    completed_twice(chaos, a, b)
    chaos.fault("readonly", None, at(-1.0), at(-0.5))
    assert measure(chaos)["duplicated"] == 1
    chaos.fault("readonly", None, at(0.5), at(1.5))  # while its outcome was on its way
    assert measure(chaos) == {"reexecuted": 1, "cut_off": 0, "killed": 0}
