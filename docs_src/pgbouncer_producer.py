"""Enqueue through PgBouncer in transaction mode, on a connection of your own that never
prepares statements (for PgBouncer older than 1.21)."""

import os

import psycopg

from queuetopia import Queuetopia

topia = Queuetopia(scope="shop")  # workers: $QUEUETOPIA_DSN, straight to PostgreSQL


@topia.action("send_receipt")
def send_receipt(order_id: int) -> None: ...


with psycopg.connect(os.environ["PGBOUNCER_URL"], prepare_threshold=None) as conn:
    for order_id in range(1, 11):
        send_receipt.options(connection=conn).delay("customer:42", order_id=order_id)
    # leaving the block commits: the jobs appear, and the workers are woken
print(len(topia.list_jobs(queue="customer:42")))  # 10
