from django.contrib import admin
from django.urls import path

from orders import shipping, views

urlpatterns = [
    path("admin/", admin.site.urls),  # Queuetopia's queues and jobs, read-only
    path("orders", views.create_order),
    path("orders/<int:order_id>/ship", shipping.ship_order),
    path("shipments/<str:result_id>", shipping.shipment),
]
