"""The orders app's actions. `python manage.py queuetopia worker` runs them."""

from django.db import close_old_connections

from queuetopia import Queuetopia

from orders.models import Order

# No DSN: queuetopia.contrib.django points the topia at Django's database.
topia = Queuetopia(scope="orders")


@topia.action("send_receipt")
def send_receipt(order_id: int) -> None:
    close_old_connections()  # a worker thread has no requests to recycle its connection
    order = Order.objects.get(pk=order_id)
    print(f"receipt for order {order.pk} sent to {order.email}")
