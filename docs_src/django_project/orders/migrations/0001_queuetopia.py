"""Queuetopia's tables, created by Django's migrations instead of `queuetopia migrate`."""

from django.db import migrations

from queuetopia.migrations import down_sql, up_sql


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunSQL(sql=up_sql(), reverse_sql=down_sql())]
