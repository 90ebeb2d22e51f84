"""A task of Django's task framework, beside the topia's actions in tasks.py:
`python manage.py queuetopia worker` runs both."""

try:
    from django.tasks import task  # Django 6
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

from orders.models import Order


@task
def notify_warehouse(order_id: int) -> str:
    order = Order.objects.get(pk=order_id)
    print(f"warehouse told to ship {order.quantity} {order.sku} of order {order.pk}")
    return order.sku  # the result's return_value: JSON, as Django requires
