"""The installed `queuetopia` console script, run as a real process without a terminal:
what a shell script or a cron job sees."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from queuetopia import Queuetopia
from queuetopia.testing import drain

from .apps.shop import SCOPE_ENV, build
from .procs import cli_env, run_cli, worker_until_waiting

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
