"""Enqueue four jobs: three for customer 42, in order, and one for customer 7."""

from tasks import send_receipt

for order_id in (1, 2, 3):
    job = send_receipt.delay("customer:42", order_id=order_id, email="ada@example.com")
    print(f"job {job.id}: order {order_id} in queue {job.queue}, {job.state}")

send_receipt.delay("customer:7", order_id=4, email="alan@example.com")
