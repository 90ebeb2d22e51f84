"""queuetopia.contrib.django.tasks.QueuetopiaBackend on the project of
tests/apps/django_tasks_project, set up in this process on a database of its own:
Django's task contract (what django-tasks-db's suite checks of its backend, where it
applies), with the project's `manage.py queuetopia worker` as a real process.

It runs twice in `python3 dev.py test`: on Django 5.2 with the django-tasks backport
(Python 3.11), and on Django 6 (Python 3.12, dev.py's second environment)."""

from __future__ import annotations

import asyncio
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
