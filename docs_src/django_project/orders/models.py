from django.db import models


class Stock(models.Model):
    sku = models.CharField(max_length=50, primary_key=True)
    available = models.IntegerField()


class Order(models.Model):
    email = models.EmailField()
    sku = models.CharField(max_length=50)
    quantity = models.IntegerField()
