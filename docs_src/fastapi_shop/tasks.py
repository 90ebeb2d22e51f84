"""The shop's actions. Workers run them: `queuetopia worker tasks:topia`."""

import os

from queuetopia import Queuetopia

DATABASE_URL = os.environ["DATABASE_URL"]  # one database for the app and its queues
topia = Queuetopia(dsn=DATABASE_URL, scope="shop")


@topia.action("send_receipt")
def send_receipt(order_id: int, email: str) -> None:
    print(f"receipt for order {order_id} sent to {email}")
