"""queuetopia.contrib.django.tasks.QueuetopiaBackend on the project of
tests/apps/django_tasks_project, set up in this process on a database of its own:
Django's task contract (what django-tasks-db's suite checks of its backend, where it
applies), with the project's `manage.py queuetopia worker` as a real process.

It runs twice in `python3 dev.py test`: on Django 5.2 with the django-tasks backport
(Python 3.11), and on Django 6 (Python 3.12, dev.py's second environment)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .helpers import wait_for

django = pytest.importorskip("django")
if django.VERSION < (6,):
    pytest.importorskip("django_tasks", reason="Django < 6 needs the django-tasks backport")

PROJECT = Path(__file__).resolve().parent / "apps" / "django_tasks_project"


@pytest.fixture(scope="module", autouse=True)
def project(dsn: str) -> Iterator[str]:
    """Django set up in this process on the project, on a new migrated database (the
    worker processes use it too): its DSN."""
    name = f"djt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(dsn, dbname=name)
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="tasksite.settings")
    sys.path.insert(0, str(PROJECT))
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", verbosity=0)
    yield url
    from tasksite.topia import topia

    topia.close()
    connections.close_all()
    sys.path.remove(str(PROJECT))
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.update({key: value})
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def queue() -> str:
    """A queue of this test's own (the tests share the project's database)."""
    return f"q-{uuid.uuid4().hex[:8]}"


@contextmanager
def worker(*queues: str) -> Iterator[subprocess.Popen[str]]:
    """`manage.py queuetopia worker --queue Q...` while the block runs; it must stop
    cleanly on SIGTERM."""
    env = {**os.environ}
    env.pop("QUEUETOPIA_DSN", None)  # the DSN comes from Django's settings
    args = [arg for q in queues for arg in ("--queue", q)]
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "queuetopia", "worker", *args],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, f"{out}\n{err}"


def finished(result: Any, timeout: float = 30.0) -> Any:
    """`result`, refreshed until its task has finished."""

    def done() -> bool:
        result.refresh()
        return bool(result.is_finished)

    wait_for(done, timeout=timeout, interval=0.05, what=f"task result {result.id}")
    return result


def backend(alias: str = "default") -> Any:
    from queuetopia.contrib.django.tasks.framework import BaseTaskBackend

    try:
        from django.tasks import task_backends
    except ImportError:
        from django_tasks import task_backends
    found = task_backends[alias]
    assert isinstance(found, BaseTaskBackend)
    return found


def fw() -> Any:
    """The task framework's names (django.tasks, or the backport's)."""
    from queuetopia.contrib.django.tasks import framework

    return framework


# -- the backend, in this process ---------------------------------------------------


def test_the_backend_is_queuetopias_and_says_what_it_supports() -> None:
    from queuetopia.contrib.django.tasks import QueuetopiaBackend

    default = backend()
    assert isinstance(default, QueuetopiaBackend)
    assert default.alias == "default" and default.options == {"max_attempts": 1}
    assert default.supports_defer and default.supports_async_task
    assert default.supports_get_result and not default.supports_priority
    assert default.check() == []


@contextmanager
def enqueued_signals() -> Iterator[list[tuple[Any, Any]]]:
    received: list[tuple[Any, Any]] = []

    def capture(sender: Any, task_result: Any, **kwargs: Any) -> None:
        received.append((sender, task_result))

    fw().task_enqueued.connect(capture, dispatch_uid="test-enqueued", weak=False)
    try:
        yield received
    finally:
        fw().task_enqueued.disconnect(dispatch_uid="test-enqueued")


def test_enqueue_writes_a_ready_job_in_the_tasks_queue(queue: str) -> None:
    from tasksite import tasks
    from tasksite.topia import topia

    from queuetopia.contrib.django.tasks import QueuetopiaBackend

    task = tasks.echo.using(queue_name=queue)
    with enqueued_signals() as received:
        result = task.enqueue(1, (2, 3), two=b"3")
    assert received == [(QueuetopiaBackend, result)]
    assert result.id.isdigit() and result.task == task and result.backend == "default"
    assert result.status == fw().TaskResultStatus.READY and not result.is_finished
    assert (result.args, result.kwargs) == ([1, [2, 3]], {"two": "3"})  # as JSON
    assert result.enqueued_at is not None
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None,) * 3
    assert (result.attempts, result.errors, result.worker_ids) == (0, [], [])
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value  # noqa: B018
    job = topia.get_job(int(result.id))
    assert job is not None and (job.queue, job.action) == (queue, "django.tasks")
    assert job.params["task"] == "tasksite.tasks.echo" and job.max_attempts == 1
    assert backend().get_result(result.id) == result
    assert tasks.echo.get_result(result.id) == result


def test_aenqueue_and_aget_result_are_the_same_as_their_sync_twins(queue: str) -> None:
    from tasksite import tasks
    from tasksite.topia import topia

    async def go() -> tuple[Any, Any, Any]:
        try:
            sync = await tasks.add.using(queue_name=queue).aenqueue(2, b=3)
            coroutine = await tasks.async_add.using(queue_name=queue).aenqueue(a=1, b=1)
            return sync, coroutine, await backend().aget_result(sync.id)
        finally:
            await topia.close_async_pool()

    sync, coroutine, fetched = asyncio.run(go())
    assert fetched == sync and (sync.args, sync.kwargs) == ([2], {"b": 3})
    assert fetched.status == fw().TaskResultStatus.READY
    actions = sorted((j.id, j.action) for j in topia.list_jobs(queue=queue))
    assert [action for _, action in actions] == ["django.tasks", "django.tasks.async"]
    assert tasks.async_add.get_result(coroutine.id) == coroutine


def test_unknown_ids_raise_task_result_does_not_exist(queue: str) -> None:
    from tasksite import tasks
    from tasksite.topia import native

    native_job = native.delay(queue, n=1)  # a job, but not a task's
    for unknown in ("999999999", "abc", "", "1.5", "-1", "٣", "9" * 40, str(native_job.id)):
        with pytest.raises(fw().TaskResultDoesNotExist):
            backend().get_result(unknown)
    with pytest.raises(fw().TaskResultDoesNotExist):
        asyncio.run(backend().aget_result("nope"))
    echoed = tasks.echo.using(queue_name=queue).enqueue()
    mismatch = pytest.importorskip(
        "django.tasks.exceptions" if django.VERSION >= (6,) else "django_tasks.exceptions"
    )
    with pytest.raises(mismatch.TaskResultMismatch):
        tasks.add.get_result(echoed.id)


def test_a_task_with_a_priority_is_refused_and_nothing_is_written(queue: str) -> None:
    from tasksite import tasks
    from tasksite.topia import topia

    with pytest.raises(fw().InvalidTask, match="strictly in order, so it has no priority"):
        tasks.add.using(priority=10, queue_name=queue)
    with pytest.raises(fw().InvalidTask, match="no priority"):
        fw().Task(func=tasks.add.func, priority=-1, queue_name=queue)
    assert topia.list_jobs(queue=queue) == []


def test_bad_queues_and_arguments_are_refused_and_nothing_is_written(queue: str) -> None:
    from django.test import override_settings
    from tasksite import tasks
    from tasksite.topia import topia

    from queuetopia import ValidationError

    with pytest.raises(fw().InvalidTask, match="queue name must be 1 to 255 characters"):
        tasks.add.using(queue_name="q" * 256)
    with pytest.raises(fw().InvalidTask, match="must not contain control characters"):
        tasks.add.using(queue_name="bad\nqueue")
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.echo.using(queue_name=queue).enqueue(when=timedelta(1))
    with pytest.raises(ValidationError):
        tasks.echo.using(queue_name=queue).enqueue(float("nan"))
    assert topia.list_jobs(queue=queue) == []
    allowed = {"BACKEND": "queuetopia.contrib.django.tasks.QueuetopiaBackend"}
    with override_settings(TASKS={"default": {**allowed, "QUEUES": ["default", queue]}}):
        assert tasks.add.using(queue_name=queue).enqueue(1, 2).status == "READY"
        with pytest.raises(fw().InvalidTask, match="Queue 'other' is not valid for backend"):
            tasks.add.using(queue_name="other").enqueue(1, 2)
    assert topia.list_jobs(queue="other") == []


def test_run_after_schedules_the_job(queue: str) -> None:
    from django.utils import timezone
    from tasksite import tasks
    from tasksite.topia import topia

    at = timezone.now() + timedelta(hours=10)
    result = tasks.add.using(queue_name=queue, run_after=at).enqueue(1, 2)
    job = topia.get_job(int(result.id))
    assert job is not None and job.scheduled_at == at
    fetched = backend().get_result(result.id)
    assert fetched == result and fetched.task.run_after == at
    with pytest.raises(fw().InvalidTask, match="run_after must be an aware datetime"):
        tasks.add.using(run_after=at.replace(tzinfo=None))


def test_enqueue_inside_atomic_commits_or_rolls_back_with_django(queue: str) -> None:
    from django.db import transaction
    from tasksite import tasks
    from tasksite.topia import topia

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        undone = tasks.add.using(queue_name=queue).enqueue(1, 1)
        raise Undo
    with pytest.raises(fw().TaskResultDoesNotExist):
        backend().get_result(undone.id)
    with transaction.atomic():
        kept = tasks.add.using(queue_name=queue).enqueue(2, 2)
        assert topia.get_job(int(kept.id)) is None  # the pool sees only what committed
    assert [j.id for j in topia.list_jobs(queue=queue)] == [int(kept.id)]


def test_the_backends_checks_say_what_is_wrong() -> None:
    from django.core.checks import run_checks
    from django.test import override_settings

    from queuetopia.contrib.django import conf

    path = "queuetopia.contrib.django.tasks.QueuetopiaBackend"

    def errors(**settings: Any) -> list[tuple[str, str]]:
        conf.get_topia.cache_clear()  # the topia is looked up again, as at start-up
        try:
            with override_settings(**settings):
                return [(e.id, e.msg) for e in backend().check()]
        finally:
            conf.get_topia.cache_clear()

    assert errors() == []
    bad = {"max_attempts": 0, "timeout": 5}
    [(eid, msg)] = errors(TASKS={"default": {"BACKEND": path, "OPTIONS": bad}})
    assert eid == "queuetopia.E003" and "max_attempts must be an int >= 1, got 0" in msg
    [(eid, msg)] = errors(TASKS={"default": {"BACKEND": path, "OPTIONS": {"retries": 1}}})
    assert msg == (
        "TASKS['default']['OPTIONS'] has unknown options: retries "
        "(known: max_attempts, max_backoff, timeout)"
    )
    [(eid, msg)] = errors(TASKS={"default": {"BACKEND": path, "QUEUES": ["ok", ""]}})
    assert eid == "queuetopia.E004" and "queue name must be 1 to 255 characters" in msg
    [(eid, msg)] = errors(QUEUETOPIA={})
    assert eid == "queuetopia.E002" and 'set QUEUETOPIA = {"APP": "module:attribute"}' in msg
    [(eid, msg)] = errors(QUEUETOPIA={"APP": "tasksite.missing:topia"})
    assert eid == "queuetopia.E002" and "No module named 'tasksite.missing'" in msg
    installed = ["django.contrib.contenttypes", "django.contrib.auth"]
    [(eid, msg)] = errors(INSTALLED_APPS=installed)
    assert eid == "queuetopia.E001" and "whose app is not installed" in msg
    # Django's own checks ask the backend too.
    with override_settings(TASKS={"default": {"BACKEND": path, "OPTIONS": bad}}):
        assert "queuetopia.E003" in [e.id for e in run_checks()]


# -- with the worker as a real process ------------------------------------------------


def test_the_worker_runs_a_task_and_its_result_says_so(queue: str) -> None:
    from tasksite import tasks

    result = tasks.add.using(queue_name=queue).enqueue(2, b=3)
    with worker(queue):
        finished(result)
    assert result.status == fw().TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.attempts == 1 and result.errors == []
    [node] = result.worker_ids
    assert node.count(":") >= 1  # host:pid
    assert result.enqueued_at <= result.started_at == result.last_attempted_at
    assert result.started_at <= result.finished_at
    assert backend().get_result(result.id) == result


def test_a_failed_task_has_one_error_per_attempt_with_its_class_and_traceback(
    queue: str,
) -> None:
    from tasksite import tasks

    refused = tasks.refuse.using(queue_name=queue).enqueue("no stock")
    divided = tasks.divide.using(queue_name=queue).enqueue(1, 0)
    not_json = tasks.not_json.using(queue_name=queue).enqueue()
    exits = tasks.exits.using(queue_name=queue).enqueue()
    after = tasks.add.using(queue_name=queue).enqueue(1, 1)  # the worker survived exit()
    with worker(queue):
        for result in (refused, divided, not_json, exits, after):
            finished(result)
    [error] = refused.errors
    assert refused.status == fw().TaskResultStatus.FAILED and refused.attempts == 1
    assert error.exception_class_path == "tasksite.tasks.Refused"
    assert error.exception_class is tasks.Refused
    assert error.traceback.startswith("Traceback (most recent call last):\n")
    assert error.traceback.endswith("tasksite.tasks.Refused: no stock\n")
    assert "raise Refused(reason)" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        refused.return_value  # noqa: B018
    assert divided.errors[0].exception_class is ZeroDivisionError
    assert not_json.errors[0].exception_class is TypeError  # Django's rule: JSON only
    assert "Unsupported type" in not_json.errors[0].traceback
    assert exits.errors[0].exception_class is SystemExit
    assert after.return_value == 2


def test_a_task_past_its_timeout_fails_with_queuetopias_timeout(queue: str) -> None:
    from tasksite import tasks

    result = tasks.sleeps.using(queue_name=queue, backend="hasty").enqueue(30)
    with worker(queue):
        finished(result)
    [error] = result.errors
    assert result.status == fw().TaskResultStatus.FAILED
    assert error.exception_class_path == "queuetopia.JobTimeout"
    assert error.traceback.startswith("timeout: the job ran past its timeout of 0.5s")


def test_a_retried_task_sees_its_attempt_and_the_errors_before_it(queue: str) -> None:
    from tasksite import tasks

    result = tasks.flaky.using(queue_name=queue, backend="retrying").enqueue(succeed_on=3)
    with worker(queue):
        finished(result)
    assert result.status == fw().TaskResultStatus.SUCCESSFUL
    assert result.return_value == {
        "attempt": 3,
        "id": result.id,
        "status": "RUNNING",
        "errors": ["ValueError: attempt 1 failed", "ValueError: attempt 2 failed"],
    }
    assert result.attempts == 3 and len(result.worker_ids) == 3
    assert [e.exception_class for e in result.errors] == [ValueError, ValueError]
    assert result.started_at < result.last_attempted_at < result.finished_at
    assert result.backend == "retrying" and result.task.backend == "retrying"


def test_a_failing_task_blocks_its_queue_while_another_queue_moves() -> None:
    from tasksite import tasks

    blocked, other = f"customer:{uuid.uuid4().hex[:6]}", f"customer:{uuid.uuid4().hex[:6]}"
    failing = tasks.refuse.using(queue_name=blocked, backend="retrying").enqueue("down")
    behind = tasks.add.using(queue_name=blocked).enqueue(1, 2)
    moving = tasks.add.using(queue_name=other).enqueue(3, 4)
    with worker(blocked, other):
        finished(moving)

        def blocked_seen() -> bool:
            behind.refresh()  # first: if the head is still unfinished after, so was it
            failing.refresh()
            return bool(failing.errors) and not failing.is_finished

        wait_for(blocked_seen, timeout=30, interval=0.05)
        assert behind.status == fw().TaskResultStatus.READY and behind.attempts == 0
        # Its attempts used up, the head fails for good and its queue moves on.
        finished(failing), finished(behind)
    assert moving.return_value == 7 and behind.return_value == 3
    assert failing.status == fw().TaskResultStatus.FAILED and len(failing.errors) == 3
    assert behind.started_at >= failing.finished_at


def test_run_after_holds_the_task_until_its_time(queue: str) -> None:
    from django.utils import timezone
    from tasksite import tasks

    at = timezone.now() + timedelta(seconds=1.5)
    later = tasks.add.using(queue_name=queue, run_after=at).enqueue(1, 2)
    with worker(queue):
        finished(later)
    assert later.started_at >= at and later.return_value == 3


def test_async_tasks_run_on_the_workers_event_loop(queue: str) -> None:
    from tasksite import tasks

    coroutine = tasks.async_add.using(queue_name=queue).enqueue(a=1, b=2)
    plain = tasks.thread_name.using(queue_name=queue).enqueue()
    with worker(queue):
        finished(coroutine), finished(plain)
    # An async task runs on the worker's one event loop (`manage.py queuetopia worker`
    # runs it in its main thread), a plain one in a thread of the worker's pool.
    assert coroutine.return_value["sum"] == 3
    assert coroutine.return_value["thread"] == "MainThread"
    assert plain.return_value.startswith("queuetopia-runner")


def test_a_task_that_cannot_be_found_fails_and_blocks_its_queue_saying_why(
    queue: str,
) -> None:
    from tasksite import tasks
    from tasksite.topia import topia

    def by_hand(path: str) -> int:
        params = {"task": path, "args": [], "kwargs": {}}
        return topia.create_job(queue, "django.tasks", params, max_attempts=2).id

    vanished = by_hand("tasksite.tasks.vanished")
    behind = tasks.add.using(queue_name=queue).enqueue(1, 1)
    with worker(queue):
        wait_for(lambda: topia.get_job(vanished).attempts >= 1, timeout=30, interval=0.05)
        assert backend().get_result(behind.id).status == fw().TaskResultStatus.READY
    job = topia.get_job(vanished)
    assert job is not None and job.error is not None
    assert job.error.startswith(
        "ImportError: task 'tasksite.tasks.vanished' cannot be imported: Module "
        '"tasksite.tasks" does not define a "vanished" attribute'
    )
    with pytest.raises(ImportError, match="cannot be imported"):
        backend().get_result(str(vanished))
    topia.cancel_job(vanished)  # the operator's way out: the queue moves on
    not_a_task = by_hand("os.getcwd")
    with worker(queue):
        finished(behind)
        wait_for(lambda: topia.get_job(not_a_task).attempts >= 1, timeout=30, interval=0.05)
    error = topia.get_job(not_a_task).error
    assert error is not None and "'os.getcwd' is not a task" in error
    topia.cancel_job(not_a_task)


def test_a_cancelled_task_is_failed_with_its_reason(queue: str) -> None:
    from tasksite import tasks
    from tasksite.topia import topia

    result = tasks.add.using(queue_name=queue).enqueue(1, 1)
    topia.cancel_job(int(result.id), reason="refunded by hand")
    result.refresh()
    assert result.status == fw().TaskResultStatus.FAILED and result.finished_at is not None
    [error] = result.errors
    assert error.exception_class_path == "queuetopia.JobCancelled"
    assert error.traceback == "cancelled: refunded by hand"


def test_the_command_line_lists_task_jobs_under_the_task_actions(queue: str) -> None:
    from tasksite import tasks

    result = tasks.echo.using(queue_name=queue).enqueue(1, x=2)
    env = {**os.environ}
    env.pop("QUEUETOPIA_DSN", None)
    listed = subprocess.run(
        [sys.executable, "manage.py", "queuetopia", "jobs", "--queue", queue, "--json"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    [job] = json.loads(listed.stdout)
    assert (job["id"], job["action"]) == (int(result.id), "django.tasks")
    assert job["params"] == {
        "task": "tasksite.tasks.echo",
        "args": [1],
        "kwargs": {"x": 2},
        "backend": "default",
    }


def test_each_attempt_sends_djangos_started_and_finished_signals(queue: str) -> None:
    """In this process: `drain` runs the jobs here, with the worker's own runner."""
    from tasksite import tasks
    from tasksite.topia import topia

    from queuetopia.contrib.django.tasks import QueuetopiaBackend
    from queuetopia.testing import drain

    seen: list[tuple[str, str, str, bool]] = []

    def capture(sender: Any, task_result: Any, **kwargs: Any) -> None:
        assert sender is QueuetopiaBackend
        failing = sys.exc_info()[0] is not None  # Django's receiver logs the traceback
        seen.append((task_result.id, task_result.task.name, task_result.status, failing))

    for signal_ in (fw().task_started, fw().task_finished):
        signal_.connect(capture, dispatch_uid="test-run", weak=False)
    try:
        added = tasks.add.using(queue_name=queue).enqueue(1, 2)
        refused = tasks.refuse.using(queue_name=queue).enqueue("no")
        drain(topia, queue=queue)
    finally:
        for signal_ in (fw().task_started, fw().task_finished):
            signal_.disconnect(dispatch_uid="test-run")
    assert seen == [
        (added.id, "add", "RUNNING", False),
        (added.id, "add", "SUCCESSFUL", False),
        (refused.id, "refuse", "RUNNING", False),
        (refused.id, "refuse", "FAILED", True),
    ]
