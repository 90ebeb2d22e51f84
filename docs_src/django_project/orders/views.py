from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from orders.models import Order, Stock
from orders.tasks import send_receipt


class OutOfStock(Exception):
    pass


@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    sku, quantity = request.POST["sku"], int(request.POST.get("quantity", 1))
    try:
        with transaction.atomic():
            order = Order.objects.create(email=request.POST["email"], sku=sku, quantity=quantity)
            # Inside atomic(): the job commits or rolls back with the order.
            job = send_receipt.delay(f"customer:{order.email}", order_id=order.pk)
            reserved = Stock.objects.filter(sku=sku, available__gte=quantity).update(
                available=F("available") - quantity
            )
            if not reserved:
                raise OutOfStock(sku)  # rolls back the order and the job
    except OutOfStock:
        return JsonResponse({"error": f"not enough {sku} in stock"}, status=409)
    return JsonResponse({"order_id": order.pk, "job_id": job.id})
