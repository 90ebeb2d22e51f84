"""A worker plans its statements once, when it starts, often on an empty install (a
new deployment, a bench's fresh database), and keeps those plans however the tables
grow (queuetopia.db.connections.Database.connect_worker: generic plans). Such a plan
must do work in proportion to its input: a plan that walks an index of every due
queue for each queue it names, or compares every lease with every queue, costs
seconds at 10,000 queues (docs/performance.md).

The work is counted from EXPLAIN ANALYZE (rows each node produced or filtered out,
times its loops), not timed: a linear plan and a quadratic one differ a hundredfold
here, with no clock involved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import ClientCursor
from psycopg.types.json import Jsonb

from queuetopia.db import queries

from .helpers import positional

QUEUES = 3_000  # all due, two pending jobs each
MANY = 200  # queues named in a step, leases renewed
PER_ITEM = 100  # rows of work per queue named or lease renewed, at most (about 45 and 8)
PER_ROW = 4  # per due queue or lease, for the looks that read them all (about 2)

Conn = psycopg.Connection[Any]


def prepare(conn: Conn, name: str) -> list[str]:
    """PREPARE the statement `name` (as the worker's connection would, generic plan);
    the names of its parameters, in order."""
    sql, names = positional(name)
    conn.execute(f"PREPARE {name.lower()} AS {sql}".encode(), prepare=False)
    return names


def execute_sql(name: str, names: list[str]) -> str:
    return f"EXECUTE {name.lower()} (" + ", ".join(f"%({n})s" for n in names) + ")"


def work(conn: Conn, execute: str, params: dict[str, Any]) -> int:
    """Rows produced and filtered out by every node of the plan, over all its loops."""
    text = ClientCursor(conn).mogrify(execute, params)
    row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {text}".encode(), prepare=False)
    plan = row.fetchone()
    assert plan is not None
    return _work(plan[0][0]["Plan"])


def _work(node: dict[str, Any]) -> int:
    per_loop = node.get("Actual Rows", 0) + sum(
        node.get(key, 0)
        for key in (
            "Rows Removed by Filter",
            "Rows Removed by Join Filter",
            "Rows Removed by Index Recheck",
        )
    )
    own = int(per_loop * node.get("Actual Loops", 1))
    return own + sum(_work(child) for child in node.get("Plans", []))


def step_batch(queues: list[str]) -> Jsonb:
    items = [{"in_queue": q, "in_acquire": True, "in_claim": True} for q in queues]
    return Jsonb({"items": items, "finishes": {}})


def step_params(batch: Jsonb) -> dict[str, Any]:
    return {"scope": "s", "owner": "o", "node": "n", "ttl": 30.0, "batch": batch}


def fill(conn: Conn) -> None:
    """QUEUES due queues of scope 's', each with two pending jobs."""
    conn.execute(
        "INSERT INTO queuetopia_queues (scope, queue, last_seq, ready_at)"
        " SELECT 's', 'q' || n, 2, now() - interval '1 minute'"
        "   FROM generate_series(0, %s - 1) AS n",
        (QUEUES,),
    )
    conn.execute(
        "INSERT INTO queuetopia_jobs (scope, queue, seq, action, params, on_exhausted,"
        " max_attempts, timeout, max_backoff, meta, scheduled_at, state)"
        " SELECT 's', 'q' || (n %% %s), n, 'a', '{}', 'block', 3, 60, 60, '{}',"
        "        now() - interval '1 minute', 'pending'"
        "   FROM generate_series(1, 2 * %s) AS n",
        (QUEUES, QUEUES),
    )


def held(conn: Conn, queues: list[str]) -> dict[str, Any]:
    """LEASE_RENEW's parameters for the live leases of `queues`."""
    rows = conn.execute(
        "SELECT queue, lease_id FROM queuetopia_leases"
        " WHERE scope = 's' AND queue = ANY(%s) AND locked_until > now() ORDER BY queue",
        (queues,),
    ).fetchall()
    assert len(rows) == len(queues)
    now = datetime.now().astimezone()
    return {
        "scope": "s",
        "ttl": 30.0,
        "queues": [r[0] for r in rows],
        "lease_ids": [r[1] for r in rows],
        "floor_ats": [now for _ in rows],
        "floor_seqs": [1 for _ in rows],
    }


def test_plans_made_on_an_empty_install_stay_linear(schema_conn: Conn) -> None:
    conn = schema_conn
    due = prepare(conn, "QUEUE_DUE")
    next_due = prepare(conn, "QUEUE_NEXT_DUE")
    renew = prepare(conn, "LEASE_RENEW")
    conn.execute(queries.job_step_prepare().encode(), prepare=False)
    step = queries.JOB_STEP_EXECUTE
    # The plans are made now, on the empty install, and kept.
    cur = ClientCursor(conn)
    cur.execute(step, step_params(step_batch(["none"])))
    cur.execute(
        execute_sql("QUEUE_DUE", due), {"scope": "s", "limit": 10, "queues": None, "skip": []}
    )
    cur.execute(
        execute_sql("QUEUE_NEXT_DUE", next_due), {"scope": "s", "owner": "x", "queues": None}
    )
    cur.execute(
        execute_sql("LEASE_RENEW", renew),
        {
            "scope": "s",
            "ttl": 30.0,
            "queues": [],
            "lease_ids": [],
            "floor_ats": [],
            "floor_seqs": [],
        },
    )
    fill(conn)

    # Per queue taken, per lease renewed: a few dozen rows, however many queues are
    # due (a plan walking the due queues for each would do QUEUES per item).
    names = [f"q{n}" for n in range(MANY)]
    took = work(conn, step, step_params(step_batch(names)))
    assert took <= PER_ITEM * MANY, took
    renewed = work(conn, execute_sql("LEASE_RENEW", renew), held(conn, names))
    assert renewed <= PER_ITEM * MANY, renewed

    # Looking for due queues, and for when to look next, with the leases another worker
    # holds: in proportion to the due queues plus the leases, never to their product.
    conn.execute("UPDATE queuetopia_leases SET owner = 'y'")
    looked = work(
        conn,
        execute_sql("QUEUE_DUE", due),
        {"scope": "s", "limit": 2 * QUEUES, "queues": None, "skip": []},
    )
    assert looked <= PER_ROW * (QUEUES + MANY), looked
    asked = work(
        conn, execute_sql("QUEUE_NEXT_DUE", next_due), {"scope": "s", "owner": "x", "queues": None}
    )
    assert asked <= PER_ROW * (QUEUES + MANY), asked
