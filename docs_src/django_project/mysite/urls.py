from django.contrib import admin
from django.urls import path

from orders import views

urlpatterns = [
    path("admin/", admin.site.urls),  # Queuetopia's queues and jobs, read-only
    path("orders", views.create_order),
]
