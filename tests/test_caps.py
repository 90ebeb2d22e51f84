"""What a job writes is bounded (docs/decisions.md, "Sizes"): its error text and
traceback, its result, a cancel reason, and the worker's log lines about it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from queuetopia import JobState, Queuetopia, ValidationError
from queuetopia.testing import drain

from .helpers import wait_for

KIB = 1024
MAX_ERROR = 64 * KIB
HUGE = 10 * 1024 * KIB  # 10 MB


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record as a handler would write it, traceback included."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return [formatter.format(r) for r in caplog.records]


def test_a_huge_error_is_stored_and_logged_cut_to_size(
    topia: Queuetopia, caplog: pytest.LogCaptureFixture
) -> None:
    @topia.action("explode", max_attempts=2)
    def explode() -> None:
        raise ValueError("boom " + "x" * HUGE)

    job = explode.delay("q")
    caplog.set_level(logging.INFO, logger="queuetopia")
    with topia.worker(concurrency=1):
        wait_for(lambda: topia.get_job(job.id).error, timeout=30)
    stored = topia.get_job(job.id)
    assert stored is not None and stored.error is not None
    size = len(stored.error.encode("utf-8"))
    assert size <= MAX_ERROR, size
    assert stored.error.startswith("ValueError: boom xxx")
    assert "[truncated " in stored.error and " bytes]" in stored.error
    assert stored.error.rstrip().endswith("x")  # the end of the traceback is kept too
    lines = logged(caplog)
    assert lines and max(len(line) for line in lines) <= 16 * KIB, max(map(len, lines))


def test_a_hook_that_raises_a_huge_error_adds_a_bounded_note(
    topia: Queuetopia, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(job: Any, error: BaseException) -> None:
        raise RuntimeError("hook " + "y" * HUGE)

    @topia.action("explode", max_attempts=2, on_failure=hook)
    def explode() -> None:
        raise ValueError("boom " + "x" * HUGE)

    job = explode.delay("q")
    caplog.set_level(logging.INFO, logger="queuetopia")
    drain(topia)
    stored = topia.get_job(job.id)
    assert stored is not None and stored.error is not None
    assert "on_failure hook raised: RuntimeError: hook yyy" in stored.error
    assert len(stored.error.encode("utf-8")) <= MAX_ERROR
    assert max(len(line) for line in logged(caplog)) <= 16 * KIB


def test_a_result_over_the_limit_is_dropped_with_a_warning(
    make_topia: Any, caplog: pytest.LogCaptureFixture
) -> None:
    topia = make_topia(max_result_bytes=100 * KIB)

    @topia.action("big")
    def big(size: int) -> str:
        return "r" * size

    small, large = big.delay("q", size=99 * KIB), big.delay("q", size=HUGE)
    caplog.set_level(logging.WARNING, logger="queuetopia")
    drain(topia)
    assert topia.get_job(small.id).result == "r" * 99 * KIB  # type: ignore[union-attr]
    dropped = topia.get_job(large.id)
    assert dropped is not None and dropped.state == JobState.DONE and dropped.result is None
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"result of job {large.id}" in w and "over the limit" in w for w in warned)


def test_the_default_result_limit_is_one_mib(topia: Queuetopia) -> None:
    @topia.action("big")
    def big(size: int) -> list[str]:
        return ["r" * size]

    fits, over = big.delay("q", size=KIB * KIB - 10), big.delay("q", size=KIB * KIB)
    drain(topia)
    assert topia.get_job(fits.id).result is not None  # type: ignore[union-attr]
    assert topia.get_job(over.id).result is None  # type: ignore[union-attr]


def test_a_cancel_reason_over_the_limit_is_refused_and_nothing_written(
    topia: Queuetopia,
) -> None:
    job = topia.create_job("q", "anything")
    with pytest.raises(ValidationError, match="reason"):
        topia.cancel_job(job.id, reason="r" * (10 * KIB))
    after = topia.get_job(job.id)
    assert after is not None and after.state == JobState.PENDING and after.error is None
    topia.cancel_job(job.id, reason="r" * KIB)  # at the limit: accepted
    assert topia.get_job(job.id).state == JobState.CANCELLED  # type: ignore[union-attr]
