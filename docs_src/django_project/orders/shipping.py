from django.db import transaction
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from orders.models import Order
from orders.webhooks import notify_warehouse

try:
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks.exceptions import TaskResultDoesNotExist


@require_POST
def ship_order(request: HttpRequest, order_id: int) -> JsonResponse:
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise Http404("no such order")
        # The customer's queue: their tasks run in order, one at a time. Inside
        # atomic(), the task commits or rolls back with the transaction.
        customer = notify_warehouse.using(queue_name=f"customer:{order.email}")
        result = customer.enqueue(order_id=order.pk)
    return JsonResponse({"result_id": result.id})


@require_GET
def shipment(request: HttpRequest, result_id: str) -> JsonResponse:
    try:
        result = notify_warehouse.get_result(result_id)
    except TaskResultDoesNotExist:
        raise Http404("no such shipment") from None
    done = result.status == "SUCCESSFUL"
    return JsonResponse(
        {
            "status": result.status,
            "attempts": result.attempts,
            "sku": result.return_value if done else None,
            "errors": [error.traceback.splitlines()[-1] for error in result.errors],
        }
    )
