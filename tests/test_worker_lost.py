"""The "worker lost" record names the lease that wrote it (docs/design.md), so the
lost worker, if it comes back, can tell that its outcome was discarded."""

from __future__ import annotations

import psycopg

from queuetopia import Queuetopia
from queuetopia.models import Found

from .helpers import record
from .test_processes import expire, take_lease


def test_a_worker_lost_record_carries_the_recovering_lease(topia: Queuetopia, dsn: str) -> None:
    topia.create_job("q", "anything")
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = take_lease(conn, topia.scope, "old-owner")
        old, running = first.lease, first.job
        assert running is not None and running.lease_id == old.lease_id
        expire(conn, topia.scope)
        lost = take_lease(conn, topia.scope, "new-owner")
        new = lost.lease
        assert new is not None
        assert lost.found is Found.ZOMBIE and lost.job == running  # to recover
        recorded = record(
            conn, scope=topia.scope, lease=new, job=running, state="pending", error="worker lost",
            backoff=60.0, owner="new-owner",
        )  # fmt: skip
        assert recorded is not None and recorded.attempts == 1
        assert recorded.lease_id == new.lease_id != old.lease_id
