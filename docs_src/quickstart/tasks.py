"""The actions of the quickstart: `queuetopia worker tasks:topia` runs them."""

from queuetopia import Queuetopia

topia = Queuetopia(scope="shop")  # the database: $QUEUETOPIA_DSN


@topia.action("send_receipt", timeout=30, max_attempts=5)
def send_receipt(order_id: int, email: str) -> str:
    print(f"receipt for order {order_id} sent to {email}", flush=True)
    return f"sent to {email}"
