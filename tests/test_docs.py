"""Every code example of the documentation is a file under docs_src/, included into the
pages with pymdownx.snippets; these tests run each one against a real PostgreSQL.

Each example gets a database of its own (created on the test server, dropped after), so
the examples show the scopes a user would write, and their job ids are predictable.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "docs_src"
CLI = str(Path(sys.executable).with_name("queuetopia"))

# What each plain script prints, line by line, in order (other lines may come between).
SCRIPTS = {
    "guarantees.py": [
        "['customer 1: order.created', 'customer 2: order.created']",
        "customer:1 blocked 2",
        "customer:2 idle 0",
        "pending 1 ConnectionError: the endpoint answered 503",
        "['customer 1: order.paid', 'customer 1: order.shipped']",
    ],
    "actions_params.py": [
        "invalid params: order_id: Input should be a valid integer, unable to parse string as"
        " an integer; address: Field required; carrier_token: Field required",
        "2026-03-02 Springfield",
        "***",
        "attempt 1: ship order 17 on 02 Mar to Springfield",
        "{'speed': 'standard', 'tracking': 'TRK-17'}",
        "{'EUR': 1.0, 'USD': 1.08}",
    ],
    "flow_control.py": [
        "sales.csv stock.csv",
        "1 ['done', 'snoozed']",
        "running",
        "cancelled cancelled: the site asked us to stop",
        "cancelled ops",
    ],
    "flow_limits.py": [
        "['partner 2/s', 'per-customer 5/s']",
        "True True",
        "True",
    ],
    "flow_after.py": [
        "True",
        "waits for job 1 (pending), job 2 (pending)",
        "charged order 7",
        "reserved order 7",
        "invoiced order 7",
        "reserved order 8",
        "reserved order 9",
        "invoiced order 8",
    ],
    "retries.py": [
        "charge 800 for acme gave up",
        "job 1 attempt 1/1 failed: 800 cents is over the limit of acme",
        "blocked True failed",
        "done done",
        "job 3 attempt 1/3 failed: 900 cents is over the limit of globex",
        "cancelled: refunded by hand",
        "done",
    ],
    "scheduling.py": [
        "2030-01-01 08:00:00+00:00",
        "user 42: welcome",
        "pending pending",
        "scheduled times must be timezone-aware datetimes",
    ],
    "enqueue_many.py": [
        "5 ['audit', 'customer:1', 'customer:2', 'customer:3']",
        "customer 1: new terms",
        "customer 1: reminder",
        "item 1: invalid params: customer_id: Input should be a valid integer, unable to parse"
        " string as an integer",
        "[]",
        "['audit']",
    ],
    "results.py": [
        "5",
        "job 2 is failed: ZeroDivisionError: division by zero",
        "1 failed ZeroDivisionError: division by zero",
    ],
    "unique_jobs.py": ["True False True", "welcome, user 42", "False False"],
    "fencing.py": ["False", "(1200,)"],
    "blocking.py": ["synced customer 8", "failed parked", "idle 1"],
    "operations.py": [
        "['webhooks:acme', 'webhooks:globex', 'webhooks:initech']",
        "retry ana partner fixed their endpoint",
        "['webhooks:acme', 'webhooks:globex', 'webhooks:initech']",
    ],
    "transactions_sync.py": ["rolled back: the terms were not accepted", "[{'user_id': 1}]"],
    "transactions_async.py": ["[{'user_id': 1}, {'user_id': 1}]"],
    "security_sensitive.py": [
        "{'card': {'cvc': '***', 'holder': 'Ada', 'number': '***'}, 'cents': 1250,"
        " 'customer': 'Ada'}",
        "0 1",
        "RuntimeError: card *** was declined",
    ],
}

# Files tested by a test of their own below, rather than run as a script.
OTHERS = {
    "quickstart/tasks.py",
    "quickstart/enqueue.py",
    "fastapi_shop/tasks.py",
    "fastapi_shop/main.py",
    "fastapi_shop/schema.sql",
    "testing/signup.py",
    "testing/conftest.py",
    "testing/test_signup.py",
    "alembic_queuetopia.py",
    "metrics_worker.py",
    "alerts.yml",
    "queuetopia-worker.service",
    "cli/mail.py",
    "cli/jobs.jsonl",
    "postgres_checks.sql",
    "pgbouncer_producer.py",
    "dashboard/shop_admin.py",
    "dashboard/demo.py",
}
NOT_SNIPPETS = {"ruff.toml"}  # lint settings of docs_src/


def snippet_files() -> set[str]:
    return {
        path
        for p in SRC.rglob("*")
        if p.is_file()
        and (path := p.relative_to(SRC).as_posix()) not in NOT_SNIPPETS
        and not any(part == "__pycache__" or part.startswith(".") for part in path.split("/"))
    }


def test_every_snippet_is_tested() -> None:
    untested = {f for f in snippet_files() if f not in SCRIPTS and f not in OTHERS} - {
        f
        for f in snippet_files()
        if f.startswith("django_project/")  # tests/test_django.py
    }
    assert not untested, f"add a test for {sorted(untested)}"


def test_every_snippet_is_shown_in_the_docs() -> None:
    pages = "\n".join(p.read_text("utf-8") for p in DOCS.rglob("*.md"))
    included = set(re.findall(r"docs_src/([\w./@-]+?)(?::[\w-]+)?[\"\n]", pages))
    hidden = {f for f in snippet_files() if f not in included and not f.endswith("__init__.py")}
    assert not hidden, f"no page includes {sorted(hidden)}"


@pytest.fixture
def fresh_dsn(dsn: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    name = f"docs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the docs' tests need a role that may create databases")
    yield make_conninfo(dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def env_for(db: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "QUEUETOPIA_DSN": db, "DATABASE_URL": db, **extra}
    env.pop("COLUMNS", None)
    return env


def run(
    args: list[str], db: str, cwd: Path = ROOT, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env_for(db, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def assert_lines_in_order(output: str, expected: list[str]) -> None:
    lines = output.splitlines()
    position = 0
    for line in expected:
        assert line in lines[position:], f"missing {line!r} after line {position} in:\n{output}"
        position = lines.index(line, position) + 1


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_prints_what_the_docs_say(name: str, fresh_dsn: str) -> None:
    result = run([sys.executable, str(SRC / name)], fresh_dsn)
    assert_lines_in_order(result.stdout, SCRIPTS[name])


def page_commands(page: str) -> list[list[str]]:
    """The `queuetopia` and `python` commands of a page's bash blocks, comments cut,
    as argument lists for this environment."""
    text = (DOCS / page).read_text("utf-8")
    lines = [
        line.split("#")[0].split()
        for block in re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
        for line in block.splitlines()
    ]
    programs = {"queuetopia": CLI, "python": sys.executable}
    return [[programs[line[0]], *line[1:]] for line in lines if line and line[0] in programs]


def test_quickstart_runs_as_the_page_says(fresh_dsn: str) -> None:
    here = SRC / "quickstart"
    steps = [
        [CLI, "migrate", "tasks:topia"],
        [sys.executable, "enqueue.py"],
        [CLI, "worker", "tasks:topia"],
        [CLI, "inspect", "tasks:topia"],
        [CLI, "jobs", "tasks:topia"],
        [CLI, "job", "tasks:topia", "1"],
    ]
    assert page_commands("quickstart.md") == steps  # the page's commands are these
    migrate, enqueue, work, *look = steps
    refused = subprocess.run(enqueue, cwd=here, env=env_for(fresh_dsn), capture_output=True)
    assert b"the queuetopia schema is not installed in this database" in refused.stderr
    run(migrate, fresh_dsn, cwd=here)
    enqueued = run(enqueue, fresh_dsn, cwd=here)
    assert_lines_in_order(
        enqueued.stdout,
        [
            "job 1: order 1 in queue customer:42, pending",
            "job 2: order 2 in queue customer:42, pending",
            "job 3: order 3 in queue customer:42, pending",
        ],
    )
    worker = subprocess.Popen(
        work,
        cwd=here,
        env=env_for(fresh_dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            done = "SELECT count(*) FROM queuetopia_jobs WHERE state = 'done'"
            wait_for(lambda: conn.execute(done).fetchone() == (4,), timeout=30, interval=0.05)
        listed = run([CLI, "jobs", "tasks:topia", "--json"], fresh_dsn, cwd=here)
        assert [job["state"] for job in json.loads(listed.stdout)] == ["done"] * 4
        inspected = run([CLI, "inspect", "tasks:topia", "--json"], fresh_dsn, cwd=here)
        assert {q["queue"]: q["status"] for q in json.loads(inspected.stdout)} == {
            "customer:42": "idle",
            "customer:7": "idle",
        }
        for command in look:  # the tables of step 6
            assert "customer:42" in run(command, fresh_dsn, cwd=here).stdout
        job = json.loads(
            run([CLI, "job", "tasks:topia", "1", "--json"], fresh_dsn, cwd=here).stdout
        )
        assert job["result"] == "sent to ada@example.com"
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    # Two worker threads print at once and print() writes the newline separately,
    # so lines from different queues may run together: match the receipts, not lines.
    receipts = re.findall(r"receipt for order \d+ sent to ada@example\.com", out)
    assert receipts == [f"receipt for order {n} sent to ada@example.com" for n in (1, 2, 3)]
    logged = " ".join(err.split())  # rich wraps log lines at the terminal's width
    assert "start job 1 queue='customer:42' action='send_receipt' attempt=1/5" in logged


def readme_tour() -> str:
    """The Python blocks of the README's "A tour", in order, as one script."""
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("\n## A tour\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 2, "the tour's Python blocks moved"
    return "\n".join(blocks)


def test_readme_tour_runs_as_written(fresh_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "tour.py").write_text(readme_tour(), "utf-8")
    result = run([sys.executable, "tour.py"], fresh_dsn, cwd=tmp_path, timeout=120)
    assert result.stdout.splitlines() == ["sent to 0@x"]
    with psycopg.connect(fresh_dsn) as conn:
        line = conn.execute(
            "SELECT params->>'to' FROM queuetopia_jobs WHERE queue = 'customer:42' ORDER BY id"
        ).fetchall()
        total = conn.execute("SELECT count(*) FROM queuetopia_jobs").fetchone()
    # The fan-out's customer:42 joined the line too, before the unique job.
    ours = ["a@example.com", "b@example.com", "c@example.com", "d@x", "e@x", "f@x", "h@x"]
    assert [to for (to,) in line] == [*ours[:-1], "42@x", ours[-1]]
    assert total == (5000 + len(ours),)


def test_fastapi_app_commits_the_job_with_the_order(fresh_dsn: str) -> None:
    here = SRC / "fastapi_shop"
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute((here / "schema.sql").read_text("utf-8").encode())
    run([CLI, "migrate"], fresh_dsn, cwd=here)
    driver = """
import warnings
warnings.simplefilter("ignore", DeprecationWarning)
from fastapi.testclient import TestClient
from queuetopia.testing import drain
from main import app
from tasks import topia

with TestClient(app) as client:
    ok = client.post("/orders", params={"email": "ada@example.com", "sku": "tea", "quantity": 2})
    no = client.post("/orders", params={"email": "alan@example.com", "sku": "tea", "quantity": 2})
print(ok.status_code, ok.json())
print(no.status_code, no.json())
print(drain(topia))
print([(job.queue, str(job.state)) for job in topia.list_jobs()])
"""
    result = run([sys.executable, "-c", driver], fresh_dsn, cwd=here)
    assert_lines_in_order(
        result.stdout,
        [
            "200 {'order_id': 1, 'job_id': 1}",
            "409 {'detail': 'not enough tea in stock'}",
            "receipt for order 1 sent to ada@example.com",
            "DrainResult(ran=1, done=1, failed=0, retried=0)",
            "[('customer:ada@example.com', 'done')]",
        ],
    )


def test_dashboard_mounts_in_fastapi_behind_the_apps_own_check(fresh_dsn: str) -> None:
    run([CLI, "migrate"], fresh_dsn)
    driver = """
import warnings
warnings.simplefilter("ignore", DeprecationWarning)
from fastapi.testclient import TestClient
from shop_admin import app, topia

topia.create_job("orders:7", "send_receipt", {"order_id": 7})
with TestClient(app) as client:
    print(client.get("/queues/").status_code)
    page = client.get("/queues/", headers={"x-staff-token": "s3cret"})
    link = 'href="/queues/queue?name=orders%3A7"'  # links keep the mount's prefix
    print(page.status_code, "orders:7" in page.text, link in page.text)
    print(client.get("/").json())
"""
    result = run(
        [sys.executable, "-c", driver], fresh_dsn, cwd=SRC / "dashboard", STAFF_TOKEN="s3cret"
    )
    assert_lines_in_order(result.stdout, ["403", "200 True True", "{'admin': 'see /queues/'}"])


def test_dashboard_demo_shows_its_blocked_queue_first(fresh_dsn: str) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, str(SRC / "dashboard" / "demo.py")],
        env=env_for(fresh_dsn, PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def first_row() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                page = response.read().decode()
        except OSError:
            return None
        rows = page.split('<tr class="queue-row ')[1:]
        return rows[0] if rows and rows[0].startswith("row-blocked") else None

    try:
        row = wait_for(first_row, timeout=60, interval=0.2, what="the blocked queue")
    finally:
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=30)
    assert "webhooks:customer-42" in row and "https://hooks.example.com answered 503" in row
    assert demo.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out


def queuetopia_tables(db: str) -> list[str]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'queuetopia%' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def test_alembic_revision_installs_and_removes_the_schema(fresh_dsn: str) -> None:
    """Alembic is not a dependency: a stand-in `alembic.op` runs the SQL the way
    op.execute does, as one SQLAlchemy text() statement."""
    driver = """
import re, sys, types
import psycopg
from queuetopia import Queuetopia

conn = psycopg.connect(sys.argv[1], autocommit=True)
# SQLAlchemy's text() would take ':name' as a bind parameter; the SQL must have none.
BIND = re.compile(r"(?<![:\\w\\\\]):(\\w+)(?!:)")

def execute(sql):
    assert not BIND.search(sql), BIND.search(sql)
    conn.execute(sql.encode())

sys.modules["alembic"] = types.SimpleNamespace(op=types.SimpleNamespace(execute=execute))
sys.path.insert(0, "docs_src")
import alembic_queuetopia as revision

revision.upgrade()
print("left after upgrade:", Queuetopia(dsn=sys.argv[1]).migrate())
revision.downgrade()
"""
    result = run([sys.executable, "-c", driver, fresh_dsn], fresh_dsn)
    assert "left after upgrade: []" in result.stdout
    assert not queuetopia_tables(fresh_dsn)


def test_the_users_test_suite_passes(fresh_dsn: str) -> None:
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SRC / "testing")],
        fresh_dsn,
    )
    assert "2 passed" in result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def test_alert_rules_use_metrics_the_worker_exports(fresh_dsn: str) -> None:
    yaml = pytest.importorskip("yaml")
    run([CLI, "migrate"], fresh_dsn)
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, str(SRC / "metrics_worker.py")],
        env=env_for(fresh_dsn, METRICS_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exported = wait_for(lambda: _try_scrape(port), timeout=30, interval=0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    rules = yaml.safe_load((SRC / "alerts.yml").read_text("utf-8"))["groups"][0]["rules"]
    used = {m for rule in rules for m in re.findall(r"queuetopia_\w+", rule["expr"])}
    assert used
    for metric in used:
        assert f"# TYPE {metric} " in exported, f"{metric} is not exported"


def _try_scrape(port: int) -> str | None:
    try:
        return scrape(port)
    except OSError:
        return None


def test_systemd_unit_runs_a_worker_that_stops_on_its_kill_signal(fresh_dsn: str) -> None:
    unit = (SRC / "queuetopia-worker.service").read_text("utf-8")
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["KillSignal"] == "SIGTERM"
    args = settings["ExecStart"].replace("%i", "1").split()
    shutdown = float(args[args.index("--shutdown-timeout") + 1])
    assert float(settings["TimeoutStopSec"]) > shutdown
    assert args[0].endswith("/bin/queuetopia")
    args[0] = CLI
    port = free_port()
    args[args.index("--metrics-port") + 1] = str(port)
    run([CLI, "migrate"], fresh_dsn)
    worker = subprocess.Popen(
        args,
        cwd=SRC / "quickstart",  # WorkingDirectory: where tasks.py is
        env=env_for(fresh_dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _try_scrape(port), timeout=30, interval=0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("worker-1 started" in entry["message"] for entry in logged)
    assert logged[-1]["message"].endswith("stopped")


def test_enqueue_file_example(fresh_dsn: str) -> None:
    here = SRC / "cli"
    run([CLI, "migrate"], fresh_dsn)
    result = run(
        [CLI, "enqueue", "mail:topia", "send_mail", "welcome", "--file", "jobs.jsonl", "--json"],
        fresh_dsn,
        cwd=here,
    )
    jobs = json.loads(result.stdout)
    assert [job["params"]["to"] for job in jobs] == ["ada@example.com", "alan@example.com"]


def test_pgbouncer_producer_enqueues_on_its_own_connection(fresh_dsn: str) -> None:
    """Without PgBouncer here: the connection goes straight to the database, which checks
    the code; docs/postgresql.md says what was checked against PgBouncer itself."""
    run([CLI, "migrate"], fresh_dsn)
    result = run(
        [sys.executable, str(SRC / "pgbouncer_producer.py")], fresh_dsn, PGBOUNCER_URL=fresh_dsn
    )
    assert result.stdout.splitlines() == ["10"]


def test_postgres_checks_run(fresh_dsn: str) -> None:
    run([CLI, "migrate"], fresh_dsn)
    script = (SRC / "postgres_checks.sql").read_text("utf-8")
    statements = [s for s in script.split(";") if "SELECT" in s]
    assert len(statements) == 4
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        results = [conn.execute(s.encode()).fetchall() for s in statements]
    options = dict(results[0])
    assert "autovacuum_vacuum_scale_factor=0.02" in options["queuetopia_jobs"]
