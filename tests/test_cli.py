"""The operator CLI (SPEC §6): inspect, jobs, job, retry, cancel, pause, resume, enqueue,
prune and migrate --status, in-process with typer's CliRunner against the APP
`tests.apps.shop:topia` in a scope of the test's own."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner, Result

from queuetopia import Job, JobState, Queuetopia, migrations
from queuetopia.testing import drain
from queuetopia_cli import ops_cmd, render
from queuetopia_cli.common import parse_duration
from queuetopia_cli.main import app

from .apps.shop import SCOPE_ENV, build
from .helpers import take, wait_for

APP = "tests.apps.shop:topia"


@pytest.fixture
def shop(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queuetopia]:
    """The APP's topia, in a fresh scope that the CLI's own copy of it also uses."""
    monkeypatch.setenv("QUEUETOPIA_DSN", dsn)
    monkeypatch.setenv(SCOPE_ENV, f"cli-{uuid.uuid4().hex[:10]}")
    topia = build()
    yield topia
    topia.close()


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables wide enough that no cell is folded, so tests can look for whole values."""
    monkeypatch.setattr(render.console, "width", 250)


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def ok(*args: str, input: str | None = None) -> Result:
    result = cli(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def assert_one_line_error(result: Result, code: int = 1) -> str:
    """The command failed with `code`, one line on stderr, no traceback, nothing else."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def send_mail(topia: Queuetopia, queue: str, to: str = "a@example.com") -> Job:
    return topia.actions["send_mail"].delay(queue, to=to)


def charge(topia: Queuetopia, queue: str) -> Job:
    return topia.actions["charge"].delay(queue, account="acme", amount_cents=500)


def state_of(topia: Queuetopia, job: Job) -> Job:
    found = topia.get_job(job.id)
    assert found is not None
    return found


# -- inspect ------------------------------------------------------------------------


def test_inspect_json_lists_blocked_queues_first_longest_blocked_first(shop: Queuetopia) -> None:
    charge(shop, "billing-late")  # created first, but it fails second
    send_mail(shop, "mail")
    send_mail(shop, "mail")
    drain(shop, "billing-late")
    first_blocked = charge(shop, "billing-zz")
    drain(shop, "billing-zz")
    drain(shop, "billing-late")  # its retry is not due: still blocked since the first drain
    shop.actions["send_mail"].schedule("later", at=timedelta(hours=1), to="b@example.com")
    send_mail(shop, "archive")
    drain(shop, "archive")
    send_mail(shop, "paused")
    shop.pause_queue("paused")

    queues = as_json("inspect", APP)

    assert [q["queue"] for q in queues] == [
        "billing-late",
        "billing-zz",
        "archive",
        "later",
        "mail",
        "paused",
    ]
    status = {q["queue"]: q["status"] for q in queues}
    assert status == {
        "billing-late": "blocked",
        "billing-zz": "blocked",
        "archive": "idle",
        "later": "waiting",
        "mail": "waiting",
        "paused": "paused",
    }
    zz = queues[1]
    assert zz["head"]["id"] == first_blocked.id
    assert zz["head"]["attempts"] == 1 and zz["head"]["max_attempts"] == 3
    assert zz["pending"] == 1
    assert "RuntimeError: card declined for acme" in zz["last_error"]
    assert zz["blocked_since"] is not None and zz["next_attempt_at"] is not None
    assert {q["queue"]: q["pending"] for q in queues}["mail"] == 2
    assert queues[0]["blocked_since"] < queues[1]["blocked_since"]


def test_inspect_table_shows_status_head_error_and_the_lease_owner(
    shop: Queuetopia, wide: None
) -> None:
    release = threading.Event()

    @shop.action("slow")
    def slow() -> None:
        release.wait(30)

    charge(shop, "billing")
    drain(shop)
    job = shop.actions["slow"].delay("reports")
    with shop.worker(concurrency=1, name="inspector") as worker:
        try:
            wait_for(lambda: state_of(shop, job).state == JobState.RUNNING)
            running = next(q for q in as_json("inspect", APP) if q["queue"] == "reports")
            table = ok("inspect", APP).stdout
        finally:
            release.set()
    assert running["status"] == "running"
    assert running["locked_by"].startswith(worker.node)
    assert running["locked_until"] is not None
    billing, reports = table.index("billing"), table.index("reports")
    assert billing < reports  # blocked first
    assert "blocked" in table and "running" in table
    assert "RuntimeError: card declined for acme" in table
    assert f"#{job.id} slow 1/20" in table
    assert f"{running['locked_by']} (expires in" in table


def test_inspect_watch_renders_a_frame_without_a_terminal(shop: Queuetopia, wide: None) -> None:
    charge(shop, "billing")
    drain(shop)
    out = ok("inspect", APP, "--watch", "--iterations", "1").stdout
    assert "queuetopia inspect" in out
    assert repr(shop.scope) in out
    assert "billing" in out and "blocked" in out
    assert "\x1b[" not in out  # no cursor movement or colour codes in a pipe


def test_inspect_watch_json_prints_one_line_per_refresh(shop: Queuetopia) -> None:
    send_mail(shop, "mail")
    out = ok("inspect", APP, "--watch", "--json", "--iterations", "2", "--interval", "0")
    frames = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(frames) == 2
    assert frames[0][0]["queue"] == "mail"


def test_inspect_of_an_empty_scope(shop: Queuetopia) -> None:
    assert as_json("inspect", APP) == []
    assert "no queues" in ok("inspect", APP).stdout


# -- jobs and job ---------------------------------------------------------------------


def test_jobs_filters_by_queue_state_action_and_text(shop: Queuetopia, wide: None) -> None:
    a = send_mail(shop, "mail", "ada@example.com")
    b = send_mail(shop, "mail", "bob@example.com")
    c = charge(shop, "billing")
    drain(shop)

    def ids(*args: str) -> list[int]:
        return [job["id"] for job in as_json("jobs", APP, *args)]

    assert ids() == [a.id, b.id, c.id]
    assert ids("--queue", "mail") == [a.id, b.id]
    assert ids("--state", "done") == [a.id, b.id]
    assert ids("--state", "pending", "--action", "charge") == [c.id]
    assert ids("--search", "bob@") == [b.id]
    assert ids("--search", "card declined") == [c.id]
    assert ids("--limit", "1") == [a.id]
    assert ids("--limit", "1", "--offset", "1") == [b.id]
    [done] = as_json("jobs", APP, "--search", "ada@")
    assert done["state"] == "done" and done["result"] == "sent to ada@example.com"

    table = ok("jobs", APP).stdout
    assert "ada@example.com" in table and "card declined" in table


def test_jobs_refuses_an_unknown_state(shop: Queuetopia) -> None:
    result = cli("jobs", APP, "--state", "exploded")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_job_shows_params_result_and_the_full_traceback(shop: Queuetopia, wide: None) -> None:
    job = charge(shop, "billing")
    drain(shop)

    data = as_json("job", APP, str(job.id))
    assert data["id"] == job.id and data["state"] == "pending" and data["attempts"] == 1
    assert data["params"] == {"account": "acme", "amount_cents": 500}
    assert "Traceback (most recent call last)" in data["error"]

    out = ok("job", APP, str(job.id)).stdout
    assert '"amount_cents": 500' in out  # pretty-printed JSON
    assert "Traceback (most recent call last)" in out  # the stored error, in full
    assert "raise RuntimeError" in out
    assert "attempts" in out and "1/3" in out


SIGN_IN = {"user": "ada", "password": "hunter2-pw", "card": {"number": "4111-1111", "n": "x"}}
MASKED = {"user": "ada", "password": "***", "card": {"number": "***", "n": "x"}}


def test_job_masks_sensitive_params(shop: Queuetopia, wide: None) -> None:
    job = shop.actions["sign_in"].delay("auth", **SIGN_IN)
    assert as_json("job", APP, str(job.id))["params"] == MASKED
    [listed] = as_json("jobs", APP, "--queue", "auth")
    assert listed["params"] == MASKED
    [queue] = as_json("inspect", APP)
    assert queue["head"]["params"] == MASKED
    for args in (("job", APP, str(job.id)), ("jobs", APP), ("inspect", APP)):
        out = ok(*args).stdout
        assert "hunter2" not in out and "4111" not in out, (args, out)
    assert shop.get_job(job.id).params == SIGN_IN  # stored as given: the action needs it


def test_enqueue_echoes_sensitive_params_masked(shop: Queuetopia) -> None:
    made = as_json("enqueue", APP, "sign_in", "auth", "--params", json.dumps(SIGN_IN))
    assert made["params"] == MASKED
    assert shop.get_job(made["id"]).params == SIGN_IN


def test_jobs_search_never_matches_a_sensitive_value(shop: Queuetopia) -> None:
    job = shop.actions["sign_in"].delay("auth", **SIGN_IN)
    assert as_json("jobs", APP, "--search", "hunter2") == []
    assert as_json("jobs", APP, "--search", "4111") == []
    assert [j["id"] for j in as_json("jobs", APP, "--search", "ada")] == [job.id]


def test_a_sensitive_value_is_not_quoted_by_a_refused_enqueue(shop: Queuetopia) -> None:
    bad = {**SIGN_IN, "card": {"number": ["4111-1111"]}}
    result = cli("enqueue", APP, "sign_in", "auth", "--params", json.dumps(bad))
    line = assert_one_line_error(result, code=2)
    assert "card.number" in line and "4111" not in line


def test_job_with_an_unknown_id_is_one_line(shop: Queuetopia) -> None:
    line = assert_one_line_error(cli("job", APP, "987654321"))
    assert line == f"error: no job 987654321 in scope {shop.scope!r}"


# -- retry, cancel, pause, resume -----------------------------------------------------


def test_retry_makes_a_blocked_job_due_now(shop: Queuetopia) -> None:
    job = charge(shop, "billing")
    drain(shop)
    out = ok("retry", APP, str(job.id)).stdout
    assert f"retried job {job.id} (charge in queue 'billing')" in out
    assert "pending → pending, due now" in out
    after = state_of(shop, job)
    assert after.next_attempt_at is None and after.state == JobState.PENDING


def test_retry_of_a_failed_job_gives_its_attempts_back(shop: Queuetopia) -> None:
    job = (
        shop.actions["charge"].options(max_attempts=1).delay("billing", account="a", amount_cents=1)
    )
    drain(shop)
    assert state_of(shop, job).state == JobState.FAILED
    out = ok("retry", APP, str(job.id)).stdout
    assert "failed → pending" in out and "attempts 0/1" in out


def test_retry_refuses_a_done_job_and_an_unknown_one(shop: Queuetopia) -> None:
    job = send_mail(shop, "mail")
    drain(shop)
    line = assert_one_line_error(cli("retry", APP, str(job.id)))
    assert line == f"error: cannot retry job {job.id}: it is done"
    assert_one_line_error(cli("retry", APP, "987654321"))


def test_cancel_records_the_reason_and_lets_the_queue_move_on(shop: Queuetopia) -> None:
    blocked = charge(shop, "billing")
    behind = charge(shop, "billing")
    drain(shop)
    out = ok("cancel", APP, str(blocked.id), "--reason", "duplicate order").stdout
    assert f"cancelled job {blocked.id}" in out and "pending → cancelled" in out
    cancelled = state_of(shop, blocked)
    assert cancelled.state == JobState.CANCELLED
    assert (cancelled.error or "").startswith("cancelled: duplicate order")
    [head] = [q.head for q in shop.list_queues() if q.queue == "billing"]
    assert head is not None and head.id == behind.id


def test_cancel_without_a_terminal_uses_the_default_reason(shop: Queuetopia) -> None:
    job = send_mail(shop, "mail")
    ok("cancel", APP, str(job.id))
    assert (state_of(shop, job).error or "").startswith("cancelled: by operator")


def test_cancel_in_a_terminal_asks_for_the_reason(
    shop: Queuetopia, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops_cmd, "_interactive", lambda: True)
    job = send_mail(shop, "mail")
    ok("cancel", APP, str(job.id), input="customer asked\n")
    assert (state_of(shop, job).error or "").startswith("cancelled: customer asked")


def test_cancel_of_a_running_job_says_its_worker_stops_it(shop: Queuetopia) -> None:
    job = send_mail(shop, "mail")
    with shop.connection() as conn:  # claimed by a worker (a test's lease)
        assert take(conn, shop.scope, "mail").job.id == job.id
    out = ok("cancel", APP, str(job.id), "--reason", "wrong address").stdout
    assert f"cancel requested for job {job.id}" in " ".join(out.split())
    asked = state_of(shop, job)
    assert asked.state == JobState.RUNNING
    assert asked.operator_log[-1].reason == "wrong address"


def test_cancel_refuses_a_done_job(shop: Queuetopia) -> None:
    job = send_mail(shop, "mail")
    drain(shop)
    line = assert_one_line_error(cli("cancel", APP, str(job.id), "--reason", "oops"))
    assert line == f"error: cannot cancel job {job.id}: it is done"
    assert state_of(shop, job).state == JobState.DONE


def test_pause_and_resume_say_what_changed_and_refuse_repeats(shop: Queuetopia) -> None:
    send_mail(shop, "mail")
    assert "paused queue 'mail'" in ok("pause", APP, "mail").stdout
    assert drain(shop).ran == 0
    line = assert_one_line_error(cli("pause", APP, "mail"))
    assert line == "error: queue 'mail' is already paused"

    assert "resumed queue 'mail': 1 pending" in ok("resume", APP, "mail").stdout
    assert drain(shop).done == 1
    line = assert_one_line_error(cli("resume", APP, "mail"))
    assert line == "error: queue 'mail' is not paused"


def test_pause_and_resume_json_print_the_queue_and_record_who_and_why(
    shop: Queuetopia,
) -> None:
    send_mail(shop, "mail")
    paused = as_json("pause", APP, "mail", "--by", "ops", "--reason", "outage")
    assert (paused["queue"], paused["paused"], paused["pending"]) == ("mail", True, 1)
    assert [(e["action"], e["by"], e["reason"]) for e in paused["operator_log"]] == [
        ("pause", "ops", "outage")
    ]
    line = assert_one_line_error(cli("pause", APP, "mail", "--json"))
    assert line == "error: queue 'mail' is already paused"
    resumed = as_json("resume", APP, "mail", "--by", "ops")
    assert resumed["paused"] is False
    assert [e["action"] for e in resumed["operator_log"]] == ["pause", "resume"]
    assert [q.paused for q in shop.list_queues()] == [False]


def test_pause_refuses_a_queue_that_does_not_exist(shop: Queuetopia) -> None:
    line = assert_one_line_error(cli("pause", APP, "typo"))
    assert line == f"error: no queue 'typo' in scope {shop.scope!r}"
    assert shop.list_queues() == []


# -- enqueue --------------------------------------------------------------------------


def test_enqueue_validates_params_like_delay(shop: Queuetopia) -> None:
    out = ok("enqueue", APP, "send_mail", "mail", "--params", '{"to": "a@example.com"}').stdout
    [job] = shop.list_jobs()
    assert out.startswith(f"enqueued job {job.id} (send_mail in queue 'mail'), due now")
    assert job.params == {"to": "a@example.com"}

    bad = cli("enqueue", APP, "send_mail", "mail", "-p", '{"too": "x"}')
    line = assert_one_line_error(bad, code=2)
    assert "invalid params" in line and "to" in line
    bad = cli("enqueue", APP, "charge", "billing", "-p", '{"account": 1}')
    line = assert_one_line_error(bad, code=2)
    assert "amount_cents" in line
    assert len(shop.list_jobs()) == 1


def test_enqueue_refuses_an_action_the_app_does_not_register(shop: Queuetopia) -> None:
    line = assert_one_line_error(cli("enqueue", APP, "sned_mail", "mail"))
    assert "registers no action 'sned_mail'" in line and "charge, send_mail" in line
    data = as_json("enqueue", APP, "elsewhere", "mail", "--any-action", "-p", '{"x": 1}')
    assert data["action"] == "elsewhere" and data["params"] == {"x": 1}


def test_enqueue_schedules_with_in_and_at(shop: Queuetopia) -> None:
    later = as_json("enqueue", APP, "send_mail", "q", "-p", '{"to": "a@x"}', "--in", "5m")
    scheduled = datetime.fromisoformat(later["scheduled_at"])
    inserted = datetime.fromisoformat(later["inserted_at"])
    assert timedelta(minutes=4) < scheduled - inserted <= timedelta(minutes=5, seconds=1)

    at = as_json(
        "enqueue", APP, "send_mail", "q", "-p", '{"to": "a@x"}', "--at", "2031-01-02T03:04:05Z"
    )
    assert datetime.fromisoformat(at["scheduled_at"]) == datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert drain(shop).ran == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--params", "{not json"],
        ["--params", "[1, 2]"],
        ["--at", "yesterday"],
        ["--at", "2031-01-01T00:00:00Z", "--in", "5"],
        ["--in", "soon"],
    ],
)
def test_enqueue_refuses_bad_options_as_usage_errors(shop: Queuetopia, args: list[str]) -> None:
    result = cli("enqueue", APP, "send_mail", "mail", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert shop.list_jobs() == []


def test_enqueue_file_adds_one_job_per_line_in_order(shop: Queuetopia, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    lines = [json.dumps({"to": f"user{i}@example.com"}) for i in range(25)]
    path.write_text("\n".join([*lines[:10], "", *lines[10:]]) + "\n")
    out = ok("enqueue", APP, "send_mail", "mail", "--file", str(path)).stdout
    assert "enqueued 25 send_mail jobs in queue 'mail'" in out
    jobs = shop.list_jobs(queue="mail")
    assert [job.params["to"] for job in jobs] == [f"user{i}@example.com" for i in range(25)]
    assert [job.seq for job in jobs] == sorted(job.seq for job in jobs)


def test_enqueue_file_with_a_bad_line_enqueues_nothing(shop: Queuetopia, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"to": "a@example.com"}\n{"to": 42}\n{"to": "c@example.com"}\n')
    line = assert_one_line_error(
        cli("enqueue", APP, "send_mail", "mail", "--file", str(path)), code=2
    )
    assert line.startswith("error: line 2: invalid params")
    path.write_text('{"to": "a@example.com"}\nnot json\n')
    result = cli("enqueue", APP, "send_mail", "mail", "--file", str(path))
    assert result.exit_code == 2 and "line 2" in result.stderr
    assert shop.list_jobs() == []


# -- prune and migrate -----------------------------------------------------------------


def test_prune_deletes_finished_jobs_older_than_the_duration(shop: Queuetopia) -> None:
    send_mail(shop, "mail")
    send_mail(shop, "mail")
    pending = charge(shop, "billing")
    drain(shop)
    assert "pruned 0 " in ok("prune", APP).stdout  # the topia's job_retention: 7 days
    out = ok("prune", APP, "--older-than", "0s").stdout
    assert out.startswith("pruned 2 done or cancelled job(s)")
    assert [job.id for job in shop.list_jobs()] == [pending.id]
    result = cli("prune", APP, "--older-than", "a week")
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800), ("1h30m", 5400)],
)
def test_durations_read_like_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_migrate_status_lists_every_version(dsn: str) -> None:
    out = ok("migrate", "--dsn", dsn, "--status").stdout
    for migration in migrations.all_migrations():
        assert f"{migration.version:04d} applied" in out


NOT_INSTALLED = (
    "error: the queuetopia schema is not installed in this database: "
    f"run `queuetopia migrate {APP}` or `topia.migrate()`"
)


@pytest.fixture
def empty(fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The APP pointed at a database where the schema was never installed."""
    database = fresh_database()
    monkeypatch.setenv("QUEUETOPIA_DSN", database)
    monkeypatch.setenv(SCOPE_ENV, "cli-empty")
    return database


def test_commands_on_a_database_without_the_schema_say_the_command_that_installs_it(
    empty: str,
) -> None:
    enqueue = ("enqueue", APP, "send_mail", "q", "-p", '{"to": "a@x"}')
    for command in (enqueue, ("inspect", APP), ("jobs", APP), ("job", APP, "1")):
        assert assert_one_line_error(cli(*command)) == NOT_INSTALLED
    assert ok("migrate", APP).stdout == f"applied {len(migrations.all_migrations())} migration(s)\n"
    assert ok(*enqueue).stdout.startswith("enqueued job 1 (send_mail in queue 'q')")


def test_an_older_schema_names_its_version_and_the_one_needed(empty: str) -> None:
    with psycopg.connect(empty, autocommit=True) as conn:
        migrations.migrate(conn, upto=1)
    line = assert_one_line_error(cli("enqueue", APP, "send_mail", "q", "-p", '{"to": "a@x"}'))
    latest = migrations.all_migrations()[-1].version
    assert line == (
        f"error: the queuetopia schema is at version 1, this library needs {latest}: "
        f"run `queuetopia migrate {APP}` or `topia.migrate()`"
    )
    assert ok("migrate", APP).stdout == f"applied {latest - 1} migration(s)\n"


def test_migrate_app_uses_the_apps_own_database(
    fresh_database: Callable[[], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A three-line APP whose topia names its DSN, as a new user writes it; `--dsn`
    still points it elsewhere."""
    own, other = fresh_database(), fresh_database()
    module = f"first_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from queuetopia import Queuetopia\n"
        f"topia = Queuetopia(dsn={own!r})\n"
        "@topia.action\n"
        "def greet(name: str) -> str: return f'hello {name}'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QUEUETOPIA_DSN", raising=False)
    spec = f"{module}:topia"
    assert ok("migrate", spec, "--status").stdout.split() == [
        word for m in migrations.all_migrations() for word in (f"{m.version:04d}", "pending")
    ]
    assert ok("migrate", spec).stdout.startswith("applied ")
    assert ok("migrate", spec).stdout == "schema is up to date\n"
    ok("enqueue", spec, f"{module}.greet", "customer:1", "-p", '{"name": "ann"}')
    with psycopg.connect(own) as conn:
        assert conn.execute("SELECT action FROM queuetopia_jobs").fetchall() == [
            (f"{module}.greet",)
        ]
    # Last: in this process, --dsn repoints the module's topia for good.
    assert "pending" in ok("migrate", spec, "--dsn", other, "--status").stdout


def test_migrate_app_maps_the_rls_role_to_the_apps_scope(shop: Queuetopia) -> None:
    printed = ok("migrate", APP, "--print-rls", "--role", "app_a").stdout
    assert printed.strip() == migrations.rls_sql("app_a", [shop.scope]).strip()
    chosen = ok("migrate", APP, "--print-rls", "--role", "app_a", "--scope", "B").stdout
    assert chosen.strip() == migrations.rls_sql("app_a", ["B"]).strip()


def test_migrate_with_a_bad_app_is_one_line_with_exit_code_2(shop: Queuetopia) -> None:
    line = assert_one_line_error(cli("migrate", "tests.apps.nowhere:topia"), code=2)
    assert line == "error: cannot import module 'tests.apps.nowhere'"


# -- help --------------------------------------------------------------------------------


def test_help_lists_each_command_in_one_line() -> None:
    """The list shows a command's first paragraph with its line breaks: each is one line."""
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    panel = shown.split("Commands")[1].split("╰")[0].splitlines()[1:]
    rows = [line.removeprefix("│ ").split()[0] for line in panel if line.strip()]
    assert rows == [
        "worker", "inspect", "jobs", "job", "retry", "cancel", "pause", "resume",
        "enqueue", "migrate", "prune", "demo", "dashboard", "limit",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "optional"),
    [("migrate", "[APP]"), ("retry", "[ID]"), ("cancel", "[ID]"), ("pause", "[QUEUE]")],
)
def test_usage_marks_optional_arguments_once(command: str, optional: str) -> None:
    shown = ok(command, "--help").stdout.splitlines()
    usage = next(line for line in shown if "Usage:" in line)
    assert optional in usage and "[[" not in usage, usage


# -- errors a person can make ---------------------------------------------------------


@pytest.mark.parametrize(
    ("app_spec", "message"),
    [
        ("tests.apps.nowhere:topia", "error: cannot import module 'tests.apps.nowhere'"),
        ("tests.apps.shop:nothing", "error: module 'tests.apps.shop' has no attribute 'nothing'"),
        ("tests.apps.shop:not_a_topia", "error: tests.apps.shop:not_a_topia is a str, not a"),
        ("tests.apps.shop", "error: APP must look like 'module:attribute'"),
        ("tests.apps.broken:topia", "error: importing 'tests.apps.broken' failed: RuntimeError"),
    ],
)
def test_a_bad_app_is_one_line_with_exit_code_2(
    shop: Queuetopia, app_spec: str, message: str
) -> None:
    for command in (["inspect", app_spec], ["jobs", app_spec], ["retry", app_spec, "1"]):
        line = assert_one_line_error(cli(*command), code=2)
        assert line.startswith(message)
        assert "hunter2" not in line  # broken.py's exception holds a DSN


@pytest.mark.parametrize(
    "bad_dsn",
    [
        "postgresql://shop:s3cr3t-pass@127.0.0.1:1/shop",
        "host=127.0.0.1 port=1 user=shop password=s3cr3t-pass dbname=shop",
    ],
)
def test_an_unreachable_database_is_one_line_without_the_password(
    shop: Queuetopia, bad_dsn: str
) -> None:
    for command in (["inspect", APP], ["job", APP, "1"], ["pause", APP, "q"]):
        line = assert_one_line_error(cli(*command, "--dsn", bad_dsn))
        assert "database unavailable" in line
        assert "s3cr3t" not in line
    line = assert_one_line_error(cli("migrate", "--status", "--dsn", bad_dsn))
    assert "s3cr3t" not in line


def test_log_format_is_checked(shop: Queuetopia) -> None:
    ok("inspect", APP, "--log-format", "json", "-v")
    result = cli("inspect", APP, "--log-format", "xml")
    assert result.exit_code == 2 and "Traceback" not in result.output


# -- rate limits (docs/flow-control.md) ---------------------------------------------------


def test_limit_set_list_and_remove(shop: Queuetopia, wide: None) -> None:
    out = ok("limit", "set", APP, "hooks", "--queues", "mail:*", "--rate", "10/s").stdout
    assert "limit 'hooks': queues 'mail:*' (each on its own budget) start at most 10/s" in out
    made = as_json("limit", "set", APP, "partner", "--queues", "p:*", "--rate", "100/min",
                   "--burst", "5", "--shared")  # fmt: skip
    assert (made["count"], made["period"], made["burst"], made["shared"]) == (100, 60.0, 5, True)
    listed = as_json("limit", "list", APP)
    assert [lim["name"] for lim in listed] == ["hooks", "partner"]
    table = ok("limit", "list", APP).stdout
    assert "hooks" in table and "per queue" in table and "100/min" in table
    assert "removed limit 'hooks'" in ok("limit", "remove", APP, "hooks").stdout
    assert [lim["name"] for lim in as_json("limit", "list", APP)] == ["partner"]


def test_limit_mistakes_are_one_line_errors_that_write_nothing(shop: Queuetopia) -> None:
    bad_rate = cli("limit", "set", APP, "x", "--queues", "mail:*", "--rate", "lots")
    assert "a rate is COUNT/PERIOD" in assert_one_line_error(bad_rate, code=2)
    no_burst = cli("limit", "set", APP, "x", "--queues", "q", "--rate", "1/s", "--burst", "0")
    assert "burst" in assert_one_line_error(no_burst, code=2)
    missing = cli("limit", "remove", APP, "nope")
    assert "no rate limit 'nope'" in assert_one_line_error(missing, code=2)
    assert shop.list_limits() == []


def test_inspect_and_job_show_a_queue_waiting_for_its_rate_limit(
    shop: Queuetopia, wide: None
) -> None:
    shop.set_limit("slow-mail", queues="mail", rate="1/h")
    send_mail(shop, "mail")
    waiting = send_mail(shop, "mail")
    drain(shop)
    assert "rate limited (slow-mail), next in 59m" in ok("inspect", APP).stdout
    [info] = [q for q in as_json("inspect", APP) if q["queue"] == "mail"]
    assert info["rate_limited_by"] == "slow-mail" and info["rate_limited_until"]
    assert "by slow-mail, next at" in ok("job", APP, str(waiting.id)).stdout


def test_inspect_and_job_show_a_head_waiting_for_other_jobs(shop: Queuetopia, wide: None) -> None:
    first = charge(shop, "billing")
    waiting = shop.actions["send_mail"].options(after=[first]).delay("mail", to="a@b")
    assert f"waits for job {first.id} (pending)" in ok("inspect", APP).stdout
    shown = ok("job", APP, str(waiting.id)).stdout
    assert f"#{first.id}" in shown and f"waits for job {first.id} (pending)" in shown
