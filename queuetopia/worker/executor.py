"""Runs ONE attempt of a job's action and classifies how it ended. No SQL here.

Plain actions run in the calling thread (`execute`: a thread of the worker's pool, or
the caller's in `queuetopia.testing.drain`); a watchdog thread interrupts them at
their deadline by raising JobTimeout inside that thread (PyThreadState_SetAsyncExc).
That lands at the next Python bytecode: code blocked inside one long C call (a
single long `time.sleep`, a socket read without timeout) is interrupted only when the
call returns. Until then the execution has not ended, so the worker keeps holding
the queue and no retry can overlap it. `async def` actions run as a task on the
running event loop (`execute_async`: the worker's one loop), and the watchdog
cancels the task.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import MAX_ERROR_BYTES, JobTimeout, ValidationError, capped, redact
from ..models import Interrupt, Outcome
from ..snooze import Snooze
from ..validation import DEFAULT_MAX_RESULT_BYTES, check_storable

if TYPE_CHECKING:
    from ..actions import Action
    from ..models import Job

logger = logging.getLogger("queuetopia.worker")


class Interrupted(BaseException):
    """Raised inside an action the worker stops (shutdown, lost lease)."""


def _inject(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None
    )


class Execution:
    """One running attempt that another thread may interrupt."""

    def __init__(self, timeout: float) -> None:
        self.thread_id = threading.get_ident()
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.reason: Interrupt | None = None
        self._active = True
        self._armed = False  # raising in the thread lands inside the action's try
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        # What `job.cancel_requested` reads inside the action (docs/flow-control.md): a
        # plain attribute, set once. An Event per job, made for every action that
        # takes `job`, cost a one-queue drain 12 % of its worker's CPU.
        self.cancel_requested = False

    def interrupt(self, reason: Interrupt) -> None:
        exc = JobTimeout if reason is Interrupt.TIMEOUT else Interrupted
        if reason is Interrupt.CANCELLED:
            self.cancel_requested = True
        with self._lock:
            if not self._active or self.reason is not None:
                return
            self.reason = reason
            if self._task is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)
            elif self._armed:
                _inject(self.thread_id, exc)

    def arm(self) -> None:
        """From here on an interrupt is raised inside the action's thread; one that
        came before (the lease lost while the job was claimed) is raised now. Raised
        any earlier, it would escape the runner, not end the attempt."""
        with self._lock:
            self._armed = True
            reason = self.reason
        if reason is not None:
            raise JobTimeout if reason is Interrupt.TIMEOUT else Interrupted

    def attach(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._loop, self._task = loop, task

    def finish(self) -> None:
        with self._lock:
            if self._active and self.reason is not None and self._task is None:
                _inject(self.thread_id, None)  # drop an exception not yet delivered
            self._active = False


class Watchdog:
    """One thread that interrupts executions at their deadlines.

    It tracks only the executions in progress (at most one per runner thread) and is
    woken only when a new deadline is sooner than every one it waits for, so a job
    costs it no thread switch in the usual case of equal timeouts. Watching and
    forgetting take no lock then either (a dict's item assignment and pop are atomic):
    with ten runner threads, the lock they shared was 4 % of a worker's CPU."""

    def __init__(self) -> None:
        self._active: dict[int, Execution] = {}
        self._counter = itertools.count()
        self._cond = threading.Condition()
        # The soonest deadline the thread sleeps until; infinite while it computes
        # that, so that an execution watched meanwhile wakes it (it may have been
        # left out of the computation).
        self._waiting_until = float("inf")
        self._thread = threading.Thread(target=self._loop, name="queuetopia-watchdog", daemon=True)
        self._thread.start()

    def watch(self, execution: Execution) -> int:
        key = next(self._counter)
        self._active[key] = execution
        if execution.deadline < self._waiting_until:
            with self._cond:
                self._cond.notify()
        return key

    def forget(self, key: int) -> None:
        self._active.pop(key, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._waiting_until = float("inf")
                now = time.monotonic()
                active = list(self._active.items())
                # Popped here, unless its runner forgot it meanwhile (the job ended).
                expired = [k for k, e in active if e.deadline <= now]
                due = [e for e in (self._active.pop(k, None) for k in expired) if e is not None]
                self._waiting_until = min(
                    (e.deadline for _, e in active if e.deadline > now), default=float("inf")
                )
                if not due:
                    wait = self._waiting_until - now
                    self._cond.wait(None if wait == float("inf") else wait)
            for execution in due:
                execution.interrupt(Interrupt.TIMEOUT)


_watchdog: Watchdog | None = None
_watchdog_lock = threading.Lock()


def watchdog() -> Watchdog:
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = Watchdog()
        return _watchdog


def execute(
    job: Job,
    action: Action[Any, Any] | None,
    on_start: Callable[[Execution], None] = lambda _e: None,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
) -> Outcome:
    """Run `job`'s plain action in this thread and say how it ended. Never raises."""
    prepared = _prepare(job, action)
    if isinstance(prepared, Outcome):
        return prepared
    assert action is not None  # _prepare returned an outcome otherwise
    execution = _execution(job, prepared)
    on_start(execution)
    key = watchdog().watch(execution)
    try:
        try:
            execution.arm()
            value = action.fn(**prepared)
        finally:
            _done(execution, key)
    except BaseException as exc:
        _done(execution, key)
        return _scrubbed(action, job, _failure(execution, exc))
    return _scrubbed(action, job, _success(job, execution, value, max_result_bytes))


async def execute_async(
    job: Job,
    action: Action[Any, Any],
    on_start: Callable[[Execution], None] = lambda _e: None,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
) -> Outcome:
    """Run `job`'s `async def` action in the current task and say how it ended. Never
    raises: an interrupt cancels the task, which this takes back (`uncancel`). Its
    timeout is the watchdog's, as for a plain action, so no timer or second task is
    made per job (`asyncio.wait_for` cost about as much as the rest of an async
    job's overhead together)."""
    prepared = _prepare(job, action)
    if isinstance(prepared, Outcome):
        return prepared
    task = asyncio.current_task()
    assert task is not None  # called from a task by contract
    execution = _execution(job, prepared)
    execution.attach(asyncio.get_running_loop(), task)
    on_start(execution)
    key = watchdog().watch(execution)
    try:
        try:
            execution.arm()
            value = await action.fn(**prepared)
        finally:
            _done(execution, key)
    except BaseException as exc:
        _done(execution, key)
        if execution.reason is not None and isinstance(exc, asyncio.CancelledError):
            task.uncancel()
        elif not isinstance(exc, Exception) and not isinstance(exc, Interrupted):
            raise  # KeyboardInterrupt, SystemExit, or a cancel of the worker itself
        return _scrubbed(action, job, _failure(execution, exc))
    return _scrubbed(action, job, _success(job, execution, value, max_result_bytes))


def _prepare(job: Job, action: Action[Any, Any] | None) -> dict[str, Any] | Outcome:
    """The action's keyword arguments from the job's params, or the outcome of an
    attempt that cannot start (an unknown action, params it does not take)."""
    if action is None:
        return Outcome(ok=False, error=f"unknown action {job.action!r}")
    try:
        kwargs = action.schema.load(job.params)
    except ValidationError as exc:
        return _scrubbed(action, job, Outcome(ok=False, error=redact(str(exc))))
    except Exception as exc:
        return _scrubbed(
            action, job, Outcome(ok=False, error=f"invalid params: {redact(str(exc))}")
        )
    if action.schema.takes_job:
        kwargs["job"] = job
    return kwargs


def _execution(job: Job, kwargs: dict[str, Any]) -> Execution:
    """The execution of `job`'s attempt; the action's `job` parameter, if it takes
    one, reads whether it was cancelled from the execution."""
    execution = Execution(job.timeout)
    if "job" in kwargs:
        kwargs["job"] = kwargs["job"].watching(execution)
    return execution


def _done(execution: Execution, key: int) -> None:
    execution.finish()
    watchdog().forget(key)


def _scrubbed(action: Action[Any, Any], job: Job, outcome: Outcome) -> Outcome:
    """What is stored, shown and logged never holds a sensitive param's value."""
    if outcome.error is not None and action.sensitive:
        return replace(outcome, error=action.scrub(outcome.error, job.params))
    return outcome


def _success(job: Job, execution: Execution, value: Any, max_result_bytes: int) -> Outcome:
    if execution.reason is not None:
        return _cut_short(execution)
    if isinstance(value, Snooze):
        return Outcome(ok=False, snooze=value.seconds)
    if isinstance(value, BaseException):
        return Outcome(ok=False, error=_describe(value), exception=value)
    return Outcome(ok=True, result=_result(job, value, max_result_bytes))


def _failure(execution: Execution, exc: BaseException) -> Outcome:
    if execution.reason is not None:
        return _cut_short(execution)
    if isinstance(exc, Snooze):
        return Outcome(ok=False, snooze=exc.seconds)
    return Outcome(ok=False, error=_describe(exc), exception=exc)


def _cut_short(execution: Execution) -> Outcome:
    if execution.reason is Interrupt.TIMEOUT:
        return Outcome(
            ok=False,
            error=f"timeout: the job ran past its timeout of {execution.timeout:g}s",
            interrupted=Interrupt.TIMEOUT,
        )
    if execution.reason is Interrupt.CANCELLED:
        return Outcome(ok=False, error="cancelled while it ran", interrupted=Interrupt.CANCELLED)
    return Outcome(ok=False, error=f"interrupted: {execution.reason}", interrupted=execution.reason)


def _describe(exc: BaseException) -> str:
    """The error's one-line summary first, then the traceback; cut to what is stored
    (a 10 MB message must not be copied around, written and logged in full)."""
    summary = "".join(traceback.format_exception_only(exc)).strip()
    trace = "".join(traceback.format_exception(exc)).rstrip()
    # Cut first: redacting 20 MB would hold the GIL long enough to starve heartbeats.
    # Twice the size stored: the runner's final cut drops this cut's edges, where a
    # value cut in two would slip past redact() and scrub().
    return redact(capped(f"{summary}\n\n{trace}", 2 * MAX_ERROR_BYTES))


def _result(job: Job, value: Any, max_bytes: int) -> Any:
    """The value to store as the job's result: itself if PostgreSQL can store it as
    JSON (no NUL, valid unicode, finite numbers, not too deep) in at most `max_bytes`,
    else None (docs/decisions.md)."""
    if value is None or type(value) in (int, bool):
        return value  # most actions return None
    try:
        check_storable("result", value)
    except ValidationError:
        return None
    size = _json_size(value, max_bytes)
    if size > max_bytes:
        logger.warning(
            "result of job %d is %d bytes of JSON, over the limit of %d"
            " (max_result_bytes): stored as None",
            job.id,
            size,
            max_bytes,
        )
        return None
    return value


def _json_size(value: Any, max_bytes: int) -> int:
    if isinstance(value, str) and len(value) * 6 + 2 <= max_bytes:
        return 0  # surely small enough: no need to serialise it here
    return len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
