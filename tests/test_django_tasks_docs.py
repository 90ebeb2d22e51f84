"""The @task of docs/django.md ("With Django's task framework") on its project
(docs_src/django_project), in a database of its own, each step a process of its own as
a user would run it: the view enqueues in its transaction, `manage.py queuetopia worker`
runs the task, the result, the command line and the admin show it. Runs on Django 5.2
with the backport and on Django 6 (see tests/test_django_tasks.py)."""

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

from .helpers import wait_for

django = pytest.importorskip("django")
if django.VERSION < (6,):
    pytest.importorskip("django_tasks", reason="Django < 6 needs the django-tasks backport")

PROJECT = Path(__file__).resolve().parent.parent / "docs_src" / "django_project"
SETUP = (
    "import django, django.test.utils\ndjango.setup()\ndjango.test.utils.setup_test_environment()\n"
)


@pytest.fixture
def db(dsn: str) -> Iterator[str]:
    name = f"djd_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def env_for(db: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": db, "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    env.pop("QUEUETOPIA_DSN", None)  # the DSN comes from Django's settings
    env.pop("COLUMNS", None)
    return env


def run(db: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=PROJECT, env=env_for(db), capture_output=True,
        text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def django_code(db: str, code: str) -> str:
    return run(db, "-c", SETUP + code)


SHIP = """
from django.test import Client
from orders.models import Stock
Stock.objects.create(sku="tea", available=5)
client = Client()
print(client.post("/orders", {"email": "ada@example.com", "sku": "tea", "quantity": 2}).json())
print(client.post("/orders/1/ship").json())
print(client.post("/orders/99/ship").status_code)
print(client.get("/shipments/2").json())
print(client.get("/shipments/1").status_code, client.get("/shipments/nope").status_code)
"""

STATUS = """
from django.test import Client
print(Client().get("/shipments/{id}").json()["status"])
"""

LISTED = """
import json
from django.contrib.auth.models import User
from django.test import Client
client = Client()
client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
print(client.get("/shipments/{id}").json())
print(client.get("/admin/queuetopia/job/").content.decode())
"""


def test_the_view_enqueues_a_task_that_the_worker_runs_beside_the_actions(db: str) -> None:
    run(db, "manage.py", "migrate", "-v", "0")
    out = django_code(db, SHIP).splitlines()
    assert out[0] == "{'order_id': 1, 'job_id': 1}"  # the native action's job
    assert out[1] == "{'result_id': '2'}"  # the task's: the next job
    assert out[2] == "404"  # no order, no task
    assert out[3] == "{'status': 'READY', 'attempts': 0, 'sku': None, 'errors': []}"
    assert out[4] == "404 404"  # job 1 is not a task's
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "queuetopia", "worker"], cwd=PROJECT, env=env_for(db),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        status = STATUS.replace("{id}", "2")
        wait_for(lambda: "SUCCESSFUL" in django_code(db, status), timeout=60, interval=0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        printed, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "warehouse told to ship 2 tea of order 1" in printed
    assert "receipt for order 1 sent to ada@example.com" in printed  # in the same queue
    shown = django_code(db, LISTED.replace("{id}", "2"))
    assert "{'status': 'SUCCESSFUL', 'attempts': 1, 'sku': 'tea', 'errors': []}" in shown
    assert "orders.webhooks.notify_warehouse" in shown  # the admin names the task
    listed = json.loads(run(db, "manage.py", "queuetopia", "jobs", "--json"))
    assert sorted((j["id"], j["action"], j["state"]) for j in listed) == [
        (1, "send_receipt", "done"),
        (2, "django.tasks", "done"),
    ]
