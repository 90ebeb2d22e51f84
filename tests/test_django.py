"""queuetopia.contrib.django on the project of docs/django.md (docs_src/django_project),
each test in a database of its own on the test server: Django's `migrate` and
`queuetopia migrate` in either order, `manage.py queuetopia`, `.delay()` inside
`transaction.atomic()`, and the read-only admin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from queuetopia import migrations

from .helpers import wait_for

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "docs_src" / "django_project"
APP_MIGRATIONS = ROOT / "queuetopia" / "contrib" / "django" / "migrations"
CLI = str(Path(sys.executable).with_name("queuetopia"))
VERSIONS = [m.version for m in migrations.all_migrations()]
VERSION_NAMES = sorted(p.stem for p in APP_MIGRATIONS.glob("[0-9]*.py"))
# The test server trusts local connections: a password in the settings is never checked,
# only looked for in what the commands print.
PASSWORD = "pw-never-printed"


@pytest.fixture
def db(dsn: str) -> Iterator[str]:
    """A new, empty database on the test server (with a password in its DSN), dropped
    afterwards."""
    name = f"dj_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(dsn, dbname=name, password=PASSWORD)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def env_for(db: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": db, "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    env.pop("QUEUETOPIA_DSN", None)  # the DSN comes from Django's settings
    env.pop("COLUMNS", None)
    return env


def run(args: list[str], db: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=PROJECT, env=env_for(db), capture_output=True, text=True, timeout=90
    )
    if check:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    assert PASSWORD not in result.stdout + result.stderr
    return result


def manage(db: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "manage.py", *args], db, check)


def django(db: str, code: str) -> str:
    """Run `code` with Django set up in the project; return what it printed."""
    setup = "import django, django.test.utils\ndjango.setup()\n"
    setup += "django.test.utils.setup_test_environment()\n"  # the test client's host
    return run([sys.executable, "-c", setup + code], db).stdout


def versions(db: str) -> list[int]:
    with psycopg.connect(db, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('queuetopia_versions')").fetchone() == (None,):
            return []
        return [r[0] for r in conn.execute("SELECT version FROM queuetopia_versions ORDER BY 1")]


def tables(db: str) -> list[str]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'queuetopia%' AND relkind = 'r'"
        )
        return sorted(r[0] for r in rows)


def jobs(db: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT scope, queue, state FROM queuetopia_jobs ORDER BY id")
        return [tuple(r) for r in rows]


def test_every_sql_version_has_a_django_migration() -> None:
    """A new migrations/000N_name.up.sql needs queuetopia/contrib/django/migrations/
    000N_name.py holding `Migration = version_migration(__name__)` (docs/django.md)."""
    sql_names = {f"{m.version:04d}_{m.name}" for m in migrations.all_migrations()}
    django_names = {p.stem for p in APP_MIGRATIONS.glob("[0-9]*.py")}
    assert django_names == sql_names


def test_the_dsn_takes_djangos_settings_and_the_libpq_keywords_among_its_options() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from queuetopia.contrib.django.conf import django_dsn

    entry = {"NAME": "shop", "USER": "", "PASSWORD": None, "HOST": "db", "PORT": 5433}
    options = {"sslmode": "require", "pool": True, "isolation_level": 1, "keepalives": 1}
    assert django_dsn({**entry, "OPTIONS": options}) == (
        "dbname=shop host=db port=5433 sslmode=require keepalives=1"
    )
    assert django_dsn({}) == ""
    for unknown in ("bogus", "conninfo"):  # a keyword libpq does not know is named
        with pytest.raises(ImproperlyConfigured, match=f'invalid connection option "{unknown}"'):
            django_dsn({**entry, "OPTIONS": {unknown: "x"}})


def test_django_migrate_creates_the_tables_queuetopia_migrate_then_finds_nothing(
    db: str,
) -> None:
    manage(db, "migrate", "-v", "0")
    assert versions(db) == VERSIONS
    assert "queuetopia_jobs" in tables(db)
    cli = run([CLI, "migrate", "--dsn", db], db)
    assert "schema is up to date" in cli.stdout
    shown = manage(db, "showmigrations", "queuetopia").stdout
    assert shown.count("[X]") == len(VERSIONS) and "[ ]" not in shown
    printed = manage(db, "sqlmigrate", "queuetopia", VERSION_NAMES[-1]).stdout
    assert migrations.all_migrations()[-1].up.strip().splitlines()[-1] in printed
    # The unmanaged models' state is in the shipped migrations: nothing to make.
    manage(db, "makemigrations", "--check", "--dry-run", "queuetopia")


def test_queuetopia_migrate_first_then_django_migrate_records_the_same_versions(
    db: str,
) -> None:
    run([CLI, "migrate", "--dsn", db], db)
    manage(db, "migrate", "-v", "0")
    assert versions(db) == VERSIONS
    shown = manage(db, "showmigrations", "queuetopia").stdout
    assert shown.count("[X]") == len(VERSIONS)


def test_a_partly_django_migrated_database_is_completed_by_either_tool(db: str) -> None:
    manage(db, "migrate", "queuetopia", "0001_initial", "-v", "0")
    assert versions(db) == [1]
    cli = run([CLI, "migrate", "--dsn", db], db)
    assert f"applied {len(VERSIONS) - 1} migration(s)" in cli.stdout
    manage(db, "migrate", "-v", "0")  # records the rest, applies nothing twice
    assert versions(db) == VERSIONS


def test_migrating_the_app_to_zero_removes_every_queuetopia_table(db: str) -> None:
    manage(db, "migrate", "-v", "0")
    with psycopg.connect(db, autocommit=True) as conn:  # the opt-in row-level security too
        conn.execute(migrations.rls_sql().encode())
    assert "queuetopia_scope_roles" in tables(db)
    manage(db, "migrate", "queuetopia", VERSION_NAMES[-2], "-v", "0")
    assert versions(db) == VERSIONS[:-1]
    manage(db, "migrate", "queuetopia", "zero", "-v", "0")
    assert tables(db) == []


def test_manage_py_queuetopia_uses_the_topia_and_djangos_database(db: str) -> None:
    manage(db, "migrate", "-v", "0")
    django(db, "from orders.tasks import send_receipt as s\ns.delay('customer:a', order_id=1)")
    inspected = json.loads(manage(db, "queuetopia", "inspect", "--json").stdout)
    assert [(q["queue"], q["status"], q["pending"]) for q in inspected] == [
        ("customer:a", "waiting", 1)
    ]
    assert inspected[0]["scope"] == "orders"
    listed = json.loads(manage(db, "queuetopia", "jobs", "--json").stdout)
    assert [(j["id"], j["action"]) for j in listed] == [(1, "send_receipt")]
    assert "schema is up to date" in manage(db, "queuetopia", "migrate").stdout
    assert "worker" in manage(db, "queuetopia", "--help").stdout


def test_manage_py_queuetopia_reports_a_bad_setup_in_one_line(db: str) -> None:
    failed = manage(db, "queuetopia", "inspect", check=False)  # no tables yet
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert failed.stderr == (
        "error: the queuetopia schema is not installed in this database: "
        "run `python manage.py migrate` or `topia.migrate()`\n"
    )
    unknown = manage(db, "queuetopia", "job", "abc", check=False)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    nowhere = make_conninfo(db, dbname="no_such_database")
    unreachable = manage(nowhere, "queuetopia", "inspect", check=False)  # checks the password
    assert unreachable.returncode == 1 and "no_such_database" in unreachable.stderr
    assert unreachable.stderr.count("\n") == 1, unreachable.stderr


ATOMIC = """
from django.db import connection, transaction
from orders.models import Order
from orders.tasks import send_receipt, topia

class Undo(Exception):
    pass

try:
    with transaction.atomic():
        send_receipt.delay("customer:rolled-back", order_id=0)  # the transaction's first statement
        Order.objects.create(email="mallory@example.com", sku="tea", quantity=1)
        raise Undo
except Undo:
    pass
print("after rollback:", [j.queue for j in topia.list_jobs()], Order.objects.count())

with transaction.atomic():
    send_receipt.delay("customer:outer", order_id=1)
    try:
        with transaction.atomic():  # a savepoint
            send_receipt.delay("customer:inner", order_id=2)
            raise Undo
    except Undo:
        pass
    order = Order.objects.create(email="ada@example.com", sku="tea", quantity=1)
    job = send_receipt.delay("customer:ada@example.com", order_id=order.pk)
    print("inside, seen by the pool:", topia.get_job(job.id))
print("after commit:", sorted(j.queue for j in topia.list_jobs()))
"""


ADA = "customer:ada@example.com"


def test_delay_inside_atomic_commits_with_the_transaction_and_a_worker_runs_it(db: str) -> None:
    manage(db, "migrate", "-v", "0")
    out = django(db, ATOMIC)
    assert "after rollback: [] 0" in out
    assert "inside, seen by the pool: None" in out  # not committed yet
    assert "after commit: ['customer:ada@example.com', 'customer:outer']" in out
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "queuetopia", "worker", "--queue", ADA],
        cwd=PROJECT,
        env=env_for(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: ("orders", "customer:ada@example.com", "done") in jobs(db),
            timeout=30,
            interval=0.1,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "receipt for order 2 sent to ada@example.com" in out  # 1: the rolled-back order
    assert PASSWORD not in out + err


def test_the_view_enqueues_in_the_request_transaction(db: str) -> None:
    manage(db, "migrate", "-v", "0")
    out = django(
        db,
        """
from django.test import Client
from orders.models import Stock
from orders.tasks import topia
Stock.objects.create(sku="tea", available=3)
ok = Client().post("/orders", {"email": "ada@example.com", "sku": "tea", "quantity": 2})
no = Client().post("/orders", {"email": "alan@example.com", "sku": "tea", "quantity": 2})
print(ok.status_code, ok.json())
print(no.status_code, no.json())
print([(job.queue, str(job.state)) for job in topia.list_jobs()])
""",
    )
    assert "200 {'order_id': 1, 'job_id': 1}" in out
    assert "409 {'error': 'not enough tea in stock'}" in out
    assert "[('customer:ada@example.com', 'pending')]" in out


ADMIN = """
from django.contrib.auth.models import User
from django.test import Client
from queuetopia import Queuetopia
from orders.tasks import topia

@topia.action("charge", sensitive=("card_token",))
def charge(card_token: str) -> None: ...

charge.delay("customer:ada", card_token="tok-visible-nowhere")
Queuetopia(dsn=topia.dsn, scope="someone-else").create_job("customer:zed", "charge", {})
client = Client()
client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
for url in ("/admin/", "/admin/queuetopia/queue/", "/admin/queuetopia/job/",
            "/admin/queuetopia/job/1/change/", "/admin/queuetopia/job/?queue=customer:ada"):
    page = client.get(url)
    print(url, page.status_code)
    print(page.content.decode())
for url in ("/admin/queuetopia/job/add/", "/admin/queuetopia/queue/add/",
            "/admin/queuetopia/job/1/delete/"):
    print(url, client.get(url).status_code)
print("post change", client.post("/admin/queuetopia/job/1/change/", {"state": "done"}).status_code)
print("state after", topia.get_job(1).state)
"""


def test_admin_lists_queues_and_jobs_of_the_scope_read_only(db: str) -> None:
    manage(db, "migrate", "-v", "0")
    out = django(db, ADMIN)
    for url in ("/admin/", "/admin/queuetopia/queue/", "/admin/queuetopia/job/"):
        assert f"{url} 200" in out
    assert "/admin/queuetopia/job/1/change/ 200" in out
    assert "/admin/queuetopia/job/?queue=customer:ada 200" in out
    assert "customer:ada" in out and "charge" in out
    assert "customer:zed" not in out  # another scope's queue
    assert "tok-visible-nowhere" not in out and "card_token=&#x27;***&#x27;" in out
    for url in ("job/add/", "queue/add/", "job/1/delete/"):
        assert f"/admin/queuetopia/{url} 403" in out
    assert "post change 403" in out
    assert "state after pending" in out
    pages = out.split("/admin/queuetopia/job/add/ 403")[0]
    assert "View job" in pages  # the job's page is a view, not a form
    for offered in ("queuetopia/job/add/", "queuetopia/queue/add/", 'class="deletelink"'):
        assert offered not in pages


def test_the_test_runner_points_the_topia_at_the_test_database(db: str) -> None:
    out = django(
        db,
        """
from django.test.utils import setup_databases, teardown_databases
from orders.tasks import topia
from psycopg.conninfo import conninfo_to_dict
before = conninfo_to_dict(topia.dsn)["dbname"]
old = setup_databases(verbosity=0, interactive=False)
print("topia database:", conninfo_to_dict(topia.dsn)["dbname"] == "test_" + before)
print("jobs in the test database:", len(topia.list_jobs()))
topia.close()
teardown_databases(old, verbosity=0)
""",
    )
    assert "topia database: True" in out
    assert "jobs in the test database: 0" in out


def test_call_command_runs_the_command_line_too(db: str) -> None:
    manage(db, "migrate", "-v", "0")
    out = django(
        db,
        """
from django.core.management import call_command
from orders.tasks import send_receipt
send_receipt.delay("customer:b", order_id=1)
call_command("queuetopia", "jobs", "--json")
""",
    )
    assert [job["queue"] for job in json.loads(out)] == ["customer:b"]


def test_without_the_app_setting_the_command_says_which_setting_to_add(db: str) -> None:
    code = """
import mysite.settings as base
from django.conf import settings
settings.configure(**{k: getattr(base, k) for k in dir(base) if k.isupper() and k != "QUEUETOPIA"})
import django
django.setup()
from django.core.management import call_command
call_command("queuetopia", "inspect")
"""
    result = run([sys.executable, "-c", code], db, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        'error: set QUEUETOPIA = {"APP": "module:attribute"} to the topia in your settings\n'
    )
