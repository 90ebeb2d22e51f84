"""Jobs that wait for other jobs: send the invoice once the charge and the stock
reservation are both done, and a fan-out with its fan-in in one call."""

from queuetopia import JobRequest, Queuetopia
from queuetopia.testing import drain

topia = Queuetopia(scope="orders")


@topia.action("charge")
def charge(order: int) -> None:
    print(f"charged order {order}")


@topia.action("reserve")
def reserve(order: int) -> None:
    print(f"reserved order {order}")


@topia.action("send_invoice")
def send_invoice(order: int) -> None:
    print(f"invoiced order {order}")


topia.migrate()
charged = charge.delay("payments:7", order=7)
reserved = reserve.delay("stock:7", order=7)
invoice = send_invoice.options(after=[charged, reserved]).delay("invoices:7", order=7)
print(invoice.depends_on == [charged.id, reserved.id])  # True

drain(topia, queue="invoices:7")  # nothing runs: the invoice waits at its queue's head
print(topia.get_queue("invoices:7").held_by)  # waits for job 1 (pending), job 2 (pending)
drain(topia)  # charged order 7, reserved order 7, invoiced order 7

# A fan-out and its fan-in in one call (and in one transaction):
parts = [JobRequest(f"stock:{n}", "reserve", {"order": n}) for n in (8, 9)]
merged = JobRequest("invoices:8", "send_invoice", {"order": 8}, after=parts)
jobs = topia.enqueue_many([*parts, merged])
drain(topia)  # reserved order 8, reserved order 9, invoiced order 8
