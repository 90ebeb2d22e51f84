"""The installed `queuetopia` console script, run as a real process without a terminal:
what a shell script or a cron job sees."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from queuetopia import Queuetopia
from queuetopia.testing import drain

from .apps.shop import SCOPE_ENV, build
from .helpers import wait_for
from .procs import CLI, cli_env, run_cli, worker_until_waiting

APP = "tests.apps.shop:topia"


@pytest.fixture
def scope(dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"cli-proc-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("QUEUETOPIA_DSN", dsn)
    monkeypatch.setenv(SCOPE_ENV, name)
    return name


@pytest.fixture
def shop(scope: str) -> Iterator[Queuetopia]:
    topia = build()
    yield topia
    topia.close()


def test_enqueue_then_inspect_json_in_real_processes(
    dsn: str, scope: str, shop: Queuetopia
) -> None:
    env = cli_env(dsn, **{SCOPE_ENV: scope})
    enqueued = run_cli(
        "enqueue",
        APP,
        "charge",
        "billing",
        "-p",
        '{"account": "acme", "amount_cents": 5}',
        "--json",
        env=env,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    job = json.loads(enqueued.stdout)
    drain(shop)

    inspected = run_cli("inspect", APP, "--json", env=env)

    assert inspected.returncode == 0, inspected.stderr
    [queue] = json.loads(inspected.stdout)  # stdout is only the JSON: logs go to stderr
    assert queue["queue"] == "billing" and queue["status"] == "blocked"
    assert queue["head"]["id"] == job["id"]


def test_the_live_view_prints_one_frame_into_a_pipe(dsn: str, scope: str, shop: Queuetopia) -> None:
    shop.actions["send_mail"].delay("mail", to="a@example.com")
    result = run_cli(
        "inspect", APP, "--watch", "--iterations", "1", env=cli_env(dsn, **{SCOPE_ENV: scope})
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("queuetopia inspect") == 1
    assert "mail" in result.stdout and "waiting" in result.stdout
    assert "\x1b[" not in result.stdout


def test_an_unknown_job_id_is_one_line_on_stderr(dsn: str, scope: str) -> None:
    result = run_cli("job", APP, "987654321", env=cli_env(dsn, **{SCOPE_ENV: scope}))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"error: no job 987654321 in scope {scope!r}\n"


def test_a_bad_dsn_never_shows_its_password(dsn: str, scope: str) -> None:
    env = cli_env("postgresql://shop:s3cr3t-pass@127.0.0.1:1/shop", **{SCOPE_ENV: scope})
    for args in (["inspect", APP], ["migrate", "--status"]):
        result = run_cli(*args, env=env, timeout=60)
        assert result.returncode == 1, result
        assert "s3cr3t" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("error: database unavailable")
        assert len(result.stderr.splitlines()) == 1, result.stderr
    # A worker waits for an unreachable database, and says so without the password.
    stdout, stderr, code = worker_until_waiting(APP, env)
    assert code == 0, stderr
    assert "s3cr3t" not in stdout + stderr and "Traceback" not in stderr
    assert "database unavailable" in stderr and "waiting for it before starting" in stderr


def test_a_bad_app_exits_2_in_one_line(dsn: str, scope: str) -> None:
    result = run_cli("inspect", "tests.apps.shop:nothing", env=cli_env(dsn, **{SCOPE_ENV: scope}))
    assert result.returncode == 2
    assert result.stderr == "error: module 'tests.apps.shop' has no attribute 'nothing'\n"


FIRST_APP = """\
from queuetopia import Queuetopia
topia = Queuetopia()
@topia.action
def greet(name: str) -> str: return f"hello {name}"
"""


def test_a_new_users_first_minutes(fresh_database: Callable[[], str], tmp_path: Path) -> None:
    """The issue's path, in real processes: a three-line app.py, an enqueue before the
    schema exists, `migrate app:topia`, the enqueue again, a worker, inspect."""
    (tmp_path / "app.py").write_text(FIRST_APP)
    database = fresh_database()
    env = cli_env(database)

    def queuetopia(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    enqueue = ("enqueue", "app:topia", "app.greet", "customer:1", "-p", '{"name": "ann"}')
    refused = queuetopia(*enqueue)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "error: the queuetopia schema is not installed in this database: "
        "run `queuetopia migrate app:topia` or `topia.migrate()`\n"
    )
    migrated = queuetopia("migrate", "app:topia")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("applied ")
    assert queuetopia(*enqueue).stdout.startswith(
        "enqueued job 1 (app.greet in queue 'customer:1')"
    )
    worker = subprocess.Popen(
        [CLI, "worker", "app:topia"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        with psycopg.connect(database, autocommit=True) as conn:
            done = "SELECT state = 'done' FROM queuetopia_jobs WHERE id = 1"
            wait_for(lambda: conn.execute(done).fetchone() == (True,), timeout=30, what="job 1")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    logged = " ".join(err.split())  # rich may wrap log lines
    assert "end job 1 queue='customer:1' action='app.greet' attempt=1/20" in logged
    [queue] = json.loads(queuetopia("inspect", "app:topia", "--json").stdout)
    assert (queue["queue"], queue["status"], queue["pending"]) == ("customer:1", "idle", 0)
    job = json.loads(queuetopia("job", "app:topia", "1", "--json").stdout)
    assert (job["state"], job["result"]) == ("done", "hello ann")
