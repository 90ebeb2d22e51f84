"""Failure hooks, sensitive params and retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from queuetopia import Job, JobState, Queuetopia

from .helpers import wait_for


def test_failure_hooks_see_each_failed_attempt(make_topia: Any) -> None:
    seen: list[tuple[str, int, str]] = []
    topia: Queuetopia = make_topia(
        on_failure=lambda job, exc: seen.append(("topia", job.attempts, type(exc).__name__))
    )

    @topia.action(
        "flaky",
        max_attempts=2,
        backoff=lambda job: 0.05,
        on_failure=lambda job, exc: seen.append(("action", job.attempts, str(exc))),
    )
    def flaky() -> None:
        raise KeyError("missing")

    job = flaky.delay("q")
    with topia.worker():
        wait_for(lambda: topia.get_job(job.id).state == JobState.FAILED)
        wait_for(lambda: len(seen) == 4)
    assert seen == [
        ("action", 1, "'missing'"),
        ("topia", 1, "KeyError"),
        ("action", 2, "'missing'"),
        ("topia", 2, "KeyError"),
    ]


def test_a_raising_hook_is_noted_on_the_job_and_the_worker_goes_on(make_topia: Any) -> None:
    def bad_hook(job: Job, exc: BaseException) -> None:
        raise ValueError("hook broke")

    topia: Queuetopia = make_topia(on_failure=bad_hook)
    ran: list[str] = []

    @topia.action("fail", max_attempts=1)
    def fail() -> None:
        raise RuntimeError("boom")

    @topia.action("ok")
    def ok() -> None:
        ran.append("ok")

    job = fail.delay("q")
    ok.delay("q")
    with topia.worker():
        wait_for(lambda: ran == ["ok"])
        noted = wait_for(lambda: "hook broke" in (topia.get_job(job.id).error or ""))
    assert noted
    assert "on_failure hook raised: ValueError: hook broke" in topia.get_job(job.id).error


def test_sensitive_params_are_hidden_when_shown(topia: Queuetopia) -> None:
    @topia.action("login", sensitive=("password",))
    def login(user: str, password: str) -> None: ...

    job = login.delay("q", user="ada", password="hunter2")
    assert job.params == {"user": "ada", "password": "hunter2"}  # stored as given
    assert topia.shown_params(job) == {"user": "ada", "password": "***"}


def test_prune_deletes_only_old_finished_jobs(topia: Queuetopia, db: psycopg.Connection) -> None:
    @topia.action("ok")
    def ok() -> None: ...

    old, recent = ok.delay("q"), ok.delay("q")
    pending = ok.schedule("q", at=timedelta(hours=1))
    with topia.worker():
        wait_for(lambda: topia.get_job(recent.id).state == JobState.DONE)
    db.execute(
        "UPDATE queuetopia_jobs SET done_at = now() - interval '8 days' WHERE id = %s", (old.id,)
    )
    assert topia.prune(older_than=timedelta(days=7)) == 1
    assert topia.get_job(old.id) is None
    assert topia.get_job(recent.id) is not None
    assert topia.get_job(pending.id) is not None


def test_worker_prunes_past_job_retention(make_topia: Any, db: psycopg.Connection) -> None:
    topia: Queuetopia = make_topia(job_retention=timedelta(seconds=1))

    @topia.action("ok")
    def ok() -> None: ...

    job = ok.delay("q")
    with topia.worker():
        wait_for(lambda: topia.get_job(job.id).state == JobState.DONE)
    db.execute(
        "UPDATE queuetopia_jobs SET done_at = now() - interval '1 minute' WHERE id = %s",
        (job.id,),
    )
    with topia.worker():  # the first prune runs a few seconds after start
        wait_for(lambda: topia.get_job(job.id) is None, timeout=15)


def test_without_prepared_statements_for_pgbouncer(make_topia: Any, dsn: str) -> None:
    topia: Queuetopia = make_topia(prepared_statements=False, listen_dsn=dsn)
    with topia.database.connect() as conn:
        assert conn.prepare_threshold is None
    ran: list[int] = []

    @topia.action("ok")
    def ok(n: int) -> None:
        ran.append(n)

    ok.delay_many("q", [{"n": n} for n in range(10)])
    with topia.worker():
        wait_for(lambda: ran == list(range(10)))
    assert topia.listen_database.dsn == dsn
