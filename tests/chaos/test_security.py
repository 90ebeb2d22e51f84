"""Bad input and security: names and params fuzzed through the CLI and (as a producer
with the least privileges) through the API; no SQL built by string formatting; the
least-privilege roles of docs/reliability.md run workers and producers with no DDL;
no DSN password in any log line, error or CLI output."""

from __future__ import annotations

import json
import random
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from queuetopia import Queuetopia, ValidationError
from queuetopia_cli.main import app

from ..procs import cli_env, run_cli, worker_until_waiting
from ..strategies import invalid_names, json_params, same, valid_names
from .fuzz_app import SCOPE_ENV
from .harness import Chaos, Db, now
from .roles import ROLES, setup_sql
from .server import ChaosServer, dsn_for
from .sqlscan import scan_package, scan_source

PACKAGE = Path(__file__).resolve().parents[2] / "queuetopia"
FUZZ_APP = "tests.chaos.fuzz_app:topia"
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- SQL is never built by string formatting -----------------------------------------------


def test_no_sql_is_built_by_string_formatting_in_queuetopia() -> None:
    findings = scan_package(PACKAGE)
    assert findings == [], "\n".join(str(f) for f in findings)


def test_the_sql_scan_catches_every_kind_of_string_building() -> None:
    """The scan above proves something only if it would catch a mistake."""
    bad = """
from .queries import CHANNEL
def f(conn, cur, name):
    conn.execute(f"SELECT * FROM jobs WHERE queue = '{name}'")
    conn.execute("SELECT * FROM jobs WHERE queue = '%s'" % name)
    cur.execute("SELECT * FROM jobs WHERE queue = '{}'".format(name))
    conn.execute("SELECT * FROM jobs WHERE queue = '" + name + "'")
    later = f"DELETE FROM jobs WHERE queue = '{name}'"
    _rows(conn, "UPDATE jobs SET queue = " + name, {})
def _rows(conn, statement, params):
    with conn.cursor() as cur:
        cur.execute(statement, params)
"""
    lines = sorted({f.line for f in scan_source(bad, "bad.py")})
    assert lines == [4, 5, 6, 7, 8, 9]
    good = """
from psycopg import sql
from .queries import CHANNEL, JOB_GET
from . import queries
def f(conn, name):
    conn.execute("LISTEN " + CHANNEL)
    conn.execute(queries.JOB_LIST, {"queue": name})
    conn.execute(JOB_GET, {"id": 1})
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
    logger.info(f"job {name} done")
"""
    assert scan_source(good, "good.py") == []
    constants = 'A = "SELECT 1"\nB = A + " UNION SELECT 2"\nC = f"SELECT {B}"\n'
    assert {f.line for f in scan_source(constants, "queries.py", statements_module=True)} == {3}


# -- the CLI: a clear error or a faithful round trip, nothing half-written ------------------


@pytest.fixture(scope="module")
def fuzz_scope(chaos_server: ChaosServer) -> Iterator[str]:
    scope = f"chaos-fuzz-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUEUETOPIA_DSN", chaos_server.dsn)
        mp.setenv(SCOPE_ENV, scope)
        yield scope


@pytest.fixture(scope="module")
def fuzz_db(chaos_server: ChaosServer) -> Iterator[Db]:
    db = Db(chaos_server.dsn)
    yield db
    db.close()


def enqueue_cli(action: str, queue: str, params: str, *extra: str) -> Result:
    # Options first and `--` before the names: a queue may well start with a dash.
    args = ["enqueue", "--json", "--params", params, *extra, "--", FUZZ_APP, action, queue]
    return CliRunner().invoke(app, args)


def rows_in(db: Db, scope: str) -> tuple[int, int]:
    row = db.rows(
        "SELECT (SELECT count(*) FROM queuetopia_jobs WHERE scope = %(s)s) AS jobs,"
        "       (SELECT count(*) FROM queuetopia_queues WHERE scope = %(s)s) AS queues",
        {"s": scope},
    )[0]
    return int(row["jobs"]), int(row["queues"])


def assert_clear_error(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


@PROPERTY
@given(queue=valid_names, action=valid_names, params=json_params)
def test_cli_enqueue_round_trips_any_valid_name_and_params(
    fuzz_scope: str, fuzz_db: Db, queue: str, action: str, params: dict[str, Any]
) -> None:
    result = enqueue_cli(action, queue, json.dumps(params), "--any-action")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    [stored] = fuzz_db.rows(
        "SELECT queue, action, params FROM queuetopia_jobs WHERE id = %s", (shown["id"],)
    )
    assert (stored["queue"], stored["action"]) == (queue, action)
    assert same(stored["params"], params)
    assert same(shown["params"], params)


@PROPERTY
@given(bad=invalid_names, where=st.sampled_from(["queue", "action"]))
def test_cli_enqueue_refuses_invalid_names_and_writes_nothing(
    fuzz_scope: str, fuzz_db: Db, bad: str, where: str
) -> None:
    before = rows_in(fuzz_db, fuzz_scope)
    queue, action = (bad, "loose") if where == "queue" else ("q", bad)
    line = assert_clear_error(enqueue_cli(action, queue, "{}", "--any-action"))
    assert where in line
    assert rows_in(fuzz_db, fuzz_scope) == before


@PROPERTY
@given(text=st.text(max_size=60) | st.sampled_from(["[]", "1", '"x"', "null", "{", "{'a': 1}"]))
def test_cli_params_that_are_not_a_json_object_are_refused(
    fuzz_scope: str, fuzz_db: Db, text: str
) -> None:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) or text == "":
        return  # a valid object (an empty --params means none): covered by the round trip
    before = rows_in(fuzz_db, fuzz_scope)
    assert_clear_error(enqueue_cli("loose", "q", text))
    assert rows_in(fuzz_db, fuzz_scope) == before


@PROPERTY
@given(
    count=st.one_of(
        st.text(max_size=5), st.floats(allow_nan=False), st.none(), st.lists(st.integers())
    ),
    extra=st.dictionaries(st.sampled_from(["colour", "size", "job"]), st.integers(), max_size=2),
)
def test_cli_params_of_a_registered_action_are_validated(
    fuzz_scope: str, fuzz_db: Db, count: Any, extra: dict[str, Any]
) -> None:
    """`typed(count: int, name: str, ...)`, validated like `.delay` (pydantic, lax: "5"
    is 5): what validation refuses is an error naming the field, with nothing
    written; what it accepts is stored as validated. `job` is never a param."""
    try:
        expected: Any = pydantic.TypeAdapter(int).validate_python(count)
    except pydantic.ValidationError:
        expected = None
    before = rows_in(fuzz_db, fuzz_scope)
    result = enqueue_cli("typed", "q", json.dumps({"count": count, "name": "x", **extra}))
    if expected is None or extra:
        line = assert_clear_error(result)
        assert ("count" in line) or any(k in line for k in extra), line
        assert rows_in(fuzz_db, fuzz_scope) == before
    else:
        assert result.exit_code == 0, result.output
        stored = json.loads(result.stdout)["params"]
        assert same(stored, {"count": expected, "name": "x"})


def test_cli_params_over_the_size_limit_are_refused(fuzz_scope: str, fuzz_db: Db) -> None:
    before = rows_in(fuzz_db, fuzz_scope)
    line = assert_clear_error(enqueue_cli("loose", "q", json.dumps({"blob": "x" * 5000})))
    assert "limit" in line
    assert rows_in(fuzz_db, fuzz_scope) == before


@pytest.mark.parametrize(
    "queue",
    ["'; DROP TABLE queuetopia_jobs; --", "-starts-with-a-dash", "ünïcødé 队列 🚀", "%s %(q)s {}"],
)
def test_odd_names_through_a_real_command_line(
    chaos_server: ChaosServer, fuzz_db: Db, queue: str
) -> None:
    scope = f"chaos-argv-{uuid.uuid4().hex[:8]}"
    env = cli_env(chaos_server.dsn, **{SCOPE_ENV: scope})
    args = ["enqueue", "--json", "--params", '{"count": 1, "name": "x"}', "--", FUZZ_APP]
    result = run_cli(*args, "typed", queue, env=env)
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["id"]
    [row] = fuzz_db.rows("SELECT scope, queue FROM queuetopia_jobs WHERE id = %s", (job_id,))
    assert (row["scope"], row["queue"]) == (scope, queue)


# -- least privileges ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def role_password(chaos_server: ChaosServer) -> str:
    password = "role-" + uuid.uuid4().hex[:12]
    with psycopg.connect(chaos_server.dsn, autocommit=True) as conn:
        for statement in setup_sql(password):
            conn.execute(statement.encode("utf-8"))  # no params: one script
    return password


def role_dsn(server: ChaosServer, role: str, password: str) -> str:
    return dsn_for(server.port, ROLES[role], password)


def role_log_lines(server: ChaosServer) -> list[str]:
    """What the server logged about statements of the roles: DDL (log_statement) and
    errors. (A killed worker's dropped connection is logged too, and is no concern.)"""
    roles = tuple(ROLES.values())
    return [
        line
        for line in server.log.read_text(errors="replace").splitlines()
        if any(f" {role} " in line for role in roles)
        and any(word in line for word in ("statement:", "ERROR:", "FATAL:"))
    ]


@pytest.fixture(scope="module")
def least_producer(chaos_server: ChaosServer, role_password: str) -> Iterator[Queuetopia]:
    """A producer that connects as qt_producer."""
    dsn = role_dsn(chaos_server, "producer", role_password)
    with Queuetopia(dsn=dsn, scope=f"chaos-producer-{uuid.uuid4().hex[:8]}") as producer:
        yield producer


@PROPERTY
@given(queue=valid_names, action=valid_names, params=json_params)
def test_a_least_privileged_producer_round_trips_names_and_params(
    least_producer: Queuetopia, queue: str, action: str, params: dict[str, Any]
) -> None:
    job = least_producer.create_job(queue, action, params)
    stored = least_producer.get_job(job.id)
    assert stored is not None
    assert (stored.queue, stored.action) == (queue, action)
    assert same(stored.params, params)


@PROPERTY
@given(bad=invalid_names, where=st.sampled_from(["queue", "action"]))
def test_a_least_privileged_producer_gets_a_clear_error_for_bad_names(
    least_producer: Queuetopia, fuzz_db: Db, bad: str, where: str
) -> None:
    before = rows_in(fuzz_db, least_producer.scope)
    queue, action = (bad, "a") if where == "queue" else ("q", bad)
    with pytest.raises(ValidationError) as caught:
        least_producer.create_job(queue, action, {})
    assert where in str(caught.value)
    assert rows_in(fuzz_db, least_producer.scope) == before


def test_an_operator_with_least_privileges_runs_every_operator_command(
    chaos_server: ChaosServer, role_password: str, fuzz_scope: str, fuzz_db: Db
) -> None:
    """qt_operator (grants.sql) can inspect, list, show, pause, resume, retry, cancel,
    prune and set, list and remove rate limits through the CLI; qt_producer enqueues
    the jobs."""
    producer = role_dsn(chaos_server, "producer", role_password)
    operator = ["--dsn", role_dsn(chaos_server, "operator", role_password)]
    queue = f"ops-{uuid.uuid4().hex[:6]}"
    made = CliRunner().invoke(
        app, ["enqueue", "--json", "--dsn", producer, "--", FUZZ_APP, "loose", queue]
    )
    assert made.exit_code == 0, made.output
    job_id = str(json.loads(made.stdout)["id"])
    runner = CliRunner()
    for args in (
        ["inspect", FUZZ_APP, "--json"],
        ["jobs", FUZZ_APP, "--json"],
        ["job", FUZZ_APP, job_id, "--json"],
        ["pause", FUZZ_APP, queue],
        ["resume", FUZZ_APP, queue],
        ["retry", FUZZ_APP, job_id],
        ["cancel", FUZZ_APP, job_id],
        ["prune", FUZZ_APP, "--older-than", "0s"],
        ["limit", "set", FUZZ_APP, "ops-limit", "--queues", queue, "--rate", "10/s"],
        ["limit", "list", FUZZ_APP],
        ["limit", "remove", FUZZ_APP, "ops-limit"],
    ):
        result = runner.invoke(app, [*args, *operator])
        assert result.exit_code == 0, (args, result.output)
    assert fuzz_db.rows("SELECT id FROM queuetopia_jobs WHERE id = %s", (int(job_id),)) == []
    assert role_log_lines(chaos_server) == []


def test_workers_and_producers_run_with_least_privileges_and_no_ddl(
    make_chaos: Callable[..., Chaos], chaos_server: ChaosServer, role_password: str
) -> None:
    """A small chaos run where workers connect as qt_worker and the producer as
    qt_producer: contention, a SIGKILL and its recovery, graceful stops. The server
    logs every DDL statement these roles send: there must be none, and no error."""
    logged_before = len(role_log_lines(chaos_server))
    chaos = make_chaos(lock_ttl=2.0, poll=1.0)
    chaos.new_producer(role_dsn(chaos_server, "producer", role_password))
    worker_dsn = role_dsn(chaos_server, "worker", role_password)
    procs = [chaos.worker(concurrency=2, dsn=worker_dsn, ready=False) for _ in range(2)]
    for proc in procs:
        proc.wait_ready(timeout=60)
    rng = random.Random(11)
    total = chaos.enqueue_grid(
        [f"q{i}" for i in range(4)], 10, lambda q, n: {"sleep": rng.uniform(0.05, 0.2)}
    )
    chaos.wait_done(5, timeout=60)
    chaos.kill(procs[0])
    chaos.worker(concurrency=2, dsn=worker_dsn)
    chaos.wait_done(total, timeout=120)
    chaos.assert_drained()
    report = chaos.check("least-privilege roles (qt_worker, qt_producer)")
    chaos.assert_clean(report)
    assert set(chaos.stop_all()) == {0}
    lines = role_log_lines(chaos_server)[logged_before:]
    assert lines == [], "\n".join(lines)
    chaos.assert_no_password_in_logs()
    for proc in chaos.group.started:
        assert role_password not in proc.log()
        assert "permission denied" not in proc.log()


# -- no password anywhere -------------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://shop:s3cr3t-pw@127.0.0.1:1/shop",
        "host=127.0.0.1 port=1 user=shop password=s3cr3t-pw dbname=shop",
        "postgresql://shop:s3cr3t-pw@127.0.0.1:notaport/shop",
        "postgresql://shop:s3cr3t-pw@127.0.0.1:1/shop?sslmode=bogus",
        "host=127.0.0.1 port=1 password='s3cr3t-pw' user",
    ],
)
def test_a_bad_dsn_never_shows_its_password(chaos_server: ChaosServer, dsn: str) -> None:
    """An unreachable or malformed DSN: the commands fail in one line on stderr, without
    a traceback and without the password. The worker (a real process) fails so for a
    malformed DSN; an unreachable database it waits for (docs/deploying.md), saying so
    without the password, until SIGTERM stops it."""
    unreachable = dsn.endswith(":1/shop") or dsn.endswith("dbname=shop")
    env = cli_env(dsn, **{SCOPE_ENV: "chaos-dsn"})
    stdout, stderr, code = worker_until_waiting(FUZZ_APP, env)
    assert "s3cr3t" not in stdout + stderr
    assert "Traceback" not in stderr
    if unreachable:
        assert code == 0, stderr
        lines = stderr.splitlines()
        assert any("waiting for it before starting" in line for line in lines), stderr
    else:
        assert code == 1 and len(stderr.splitlines()) == 1, stderr
    for args in (
        ["enqueue", FUZZ_APP, "loose", "q"],
        ["inspect", FUZZ_APP],
        ["jobs", FUZZ_APP],
        ["migrate", "--status"],
    ):
        line = assert_clear_error(CliRunner().invoke(app, [*args, "--dsn", dsn]), code=1)
        assert "s3cr3t" not in line, line


def test_a_wrong_password_is_not_shown(chaos_server: ChaosServer) -> None:
    """The server is reachable and refuses the password: the error says so, and only so."""
    wrong = "wr0ng-" + uuid.uuid4().hex[:8]
    dsn = chaos_server.dsn.replace(chaos_server.password, wrong)
    for args in (["worker", FUZZ_APP], ["enqueue", FUZZ_APP, "loose", "q"]):
        result = run_cli(*args, env=cli_env(dsn, **{SCOPE_ENV: "chaos-dsn"}), timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "password authentication failed" in output
        assert wrong not in output and chaos_server.password not in output


def test_a_running_worker_that_loses_its_database_never_logs_the_password(
    make_chaos: Callable[..., Chaos], chaos_server: ChaosServer
) -> None:
    """Every warning a worker logs while its database is away (listener, heartbeat,
    bookkeeping retries, connection failures) is free of the password of its DSN."""
    chaos = make_chaos(lock_ttl=2.0, poll=1.0)
    worker = chaos.worker(concurrency=2)
    chaos.enqueue("q", 0, sleep=0.5)
    began = now()
    chaos_server.outage(3.0)
    chaos.fault("outage", None, began, now())
    chaos.new_producer()  # see test_the_producer_pool_survives_a_database_restart
    chaos.enqueue("q", 1)
    chaos.wait_done(2, timeout=60)
    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0
    warnings = [line for line in chaos.log_lines(worker) if line["level"] == "warning"]
    assert warnings, "the worker logged nothing about the outage"
    chaos.assert_no_password_in_logs()
